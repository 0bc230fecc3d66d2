package authkeys_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/oma/authkeys"
)

// authorized returns pub in authorized_keys form with a comment.
func authorized(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("ssh public key: %v", err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " someone@laptop"
}

func TestLine(t *testing.T) {
	t.Parallel()
	// A fixed key: the line is exact.
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5bVb0Hq8GpV0uCkq2cJ3Ytq0wQFJ9XrX7i1dVb4dS"
	tests := []struct {
		name string
		fw   authkeys.Forwards
		id   string
		want string
	}{
		{"small pool", authkeys.Forwards{NATS: "127.0.0.1:4222", FirstPort: 10100, LastPort: 10102}, "vma-1",
			`restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:4222",permitopen="127.0.0.1:10100",permitopen="127.0.0.1:10101",permitopen="127.0.0.1:10102" ` + key + " godwit-vma-vma-1"},
		{"nats everywhere, one port, second VMA", authkeys.Forwards{NATS: "0.0.0.0:4333", NBDHost: "::", FirstPort: 12000, LastPort: 12000}, "b",
			`restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:4333",permitopen="127.0.0.1:12000" ` + key + " godwit-vma-b"},
		{"a cluster's three nodes", authkeys.Forwards{NATS: "10.0.0.1:4222,10.0.0.2:4222, 10.0.0.3:4222", NBDHost: "10.0.0.1", FirstPort: 10100, LastPort: 10100}, "d",
			`restrict,command="/bin/false",port-forwarding,permitopen="10.0.0.1:4222",permitopen="10.0.0.2:4222",permitopen="10.0.0.3:4222",permitopen="10.0.0.1:10100" ` + key + " godwit-vma-d"},
		{"export host", authkeys.Forwards{NBDHost: "10.0.0.5", FirstPort: 10100, LastPort: 10100}, "c",
			`restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:4222",permitopen="10.0.0.5:10100" ` + key + " godwit-vma-c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := authkeys.Line(tt.fw, key+" old comment", tt.id)
			if err != nil || got != tt.want {
				t.Errorf("Line(%+v, %q) =\n%s, %v\nwant\n%s", tt.fw, tt.id, got, err, tt.want)
			}
		})
	}
}

func TestLineDefaults(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	got, err := authkeys.Line(authkeys.Forwards{}, authorized(t, priv.Public()), "vma-1")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(got, "permitopen="); n != 101 {
		t.Errorf("default line has %d permitopen, want 101 (NATS and 10100-10199):\n%s", n, got)
	}
	for _, want := range []string{`permitopen="127.0.0.1:4222"`, `permitopen="127.0.0.1:10100"`, `permitopen="127.0.0.1:10199"`} {
		if !strings.Contains(got, want) {
			t.Errorf("default line has no %s", want)
		}
	}
	if strings.Contains(got, "permitlisten") {
		t.Errorf("default line lets the key listen on a TCP port:\n%s", got)
	}
	if strings.Contains(got, "someone@laptop") {
		t.Errorf("the line kept the operator's comment:\n%s", got)
	}
	for _, bad := range []struct {
		name string
		fw   authkeys.Forwards
	}{
		{"reversed pool", authkeys.Forwards{FirstPort: 10199, LastPort: 10100}},
		{"bad nats", authkeys.Forwards{NATS: "nonsense"}},
	} {
		if _, err := authkeys.Line(bad.fw, authorized(t, priv.Public()), "vma-1"); err == nil {
			t.Errorf("Line with %s = nil error", bad.name)
		}
	}
}

func TestPublicKey(t *testing.T) {
	t.Parallel()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaBig, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed := authorized(t, edPriv.Public())
	tests := []struct {
		name    string
		in      string
		wantErr string // "" accepts
	}{
		{"ed25519", ed, ""},
		{"ed25519 without comment", strings.Join(strings.Fields(ed)[:2], " "), ""},
		{"rsa 3072", authorized(t, rsaBig.Public()), ""},
		{"rsa 2048", authorized(t, rsaSmall.Public()), "2048 bits"},
		{"ecdsa", authorized(t, ec.Public()), "ecdsa-sha2-nistp256"},
		{"empty", "  ", "no key"},
		{"garbage", "ssh-ed25519 not-base64!", "not an SSH public key"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "not an SSH public key"},
		{"options", `restrict,permitopen="1.2.3.4:22" ` + ed, "options"},
		{"two keys", ed + "\n" + ed, "one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := authkeys.PublicKey(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("PublicKey(%q) = %v, want accepted", tt.in, err)
			case tt.wantErr == "" && (strings.Contains(got, "laptop") || strings.Count(got, " ") != 1):
				t.Errorf("PublicKey(%q) = %q, want type and key only", tt.in, got)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("PublicKey(%q) = %q, %v, want an error with %q", tt.in, got, err, tt.wantErr)
			}
		})
	}
}
