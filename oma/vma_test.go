package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/store"
)

// testKey is a fixed ed25519 public key, so lines are exact.
const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5bVb0Hq8GpV0uCkq2cJ3Ytq0wQFJ9XrX7i1dVb4dS"

// TestVMAAddSSHKey registers VMAs with SSH keys: each gets the next API
// port and its exact authorized_keys line; authorized-keys prints them all.
func TestVMAAddSSHKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "id_ed25519.pub")
	if err := os.WriteFile(keyFile, []byte(testKey+" root@vma-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := []string{"-data", dir, "-nbd-ports", "10100-10111", "-nbd-ports-per-vma", "2"}
	// Each VMA's line opens NATS and its own share of the pool only.
	lineOf := func(id string, ports ...int) string {
		s := `restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:4222"`
		for _, p := range ports {
			s += fmt.Sprintf(`,permitopen="127.0.0.1:%d"`, p)
		}
		return s + " " + testKey + " godwit-vma-" + id
	}
	line := func(id string, _ string) string { // the API port is no longer in the line: the OMA holds it
		first := map[string]int{"vma-1": 10100, "vma-2": 10102}[id]
		return lineOf(id, first, first+1)
	}
	tests := []struct {
		name string
		args []string
		want []string // lines the output holds
	}{
		{"key on the command line", []string{"-id", "vma-1", "-ssh-key", testKey + " root@vma-1"}, []string{line("vma-1", "9081"), " on the OMA.",
			"# Its jobs' exports are on the OMA's NBD ports 10100-10101, its share of the pool."}},
		{"key in a file gets the next port", []string{"-id", "vma-2", "-ssh-key-file", keyFile}, []string{line("vma-2", "9082")}},
		{"no key: a port, no line", []string{"-id", "vma-3"}, []string{" on the OMA."}},
		{"a port of its own", []string{"-id", "vma-4", "-api-port", "19500"}, []string{"127.0.0.1:19500 on the OMA."}},
	}
	// Each VMA without a port of its own gets the lowest free one from
	// 9081: free of VMAs, and of other processes (other tests hold some).
	apiPort := regexp.MustCompile(`forwarded to 127\.0\.0\.1:(\d+) on the OMA\.`)
	last := authkeys.FirstAPIPort - 1
	nextPort := func(name, out string) {
		t.Helper()
		m := apiPort.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("%s: vma add printed no API port:\n%s", name, out)
			return
		}
		if p, _ := strconv.Atoi(m[1]); p <= last {
			t.Errorf("%s: API port %d, want one after %d", name, p, last)
		} else {
			last = p
		}
	}
	for _, tt := range tests { // in order: the ports depend on it
		var out, errOut bytes.Buffer
		if err := dispatch(context.Background(), append(append([]string{"vma", "add"}, tt.args...), pool...), &out, &errOut); err != nil {
			t.Fatalf("%s: vma add = %v", tt.name, err)
		}
		if !slices.Contains(tt.args, "-api-port") {
			nextPort(tt.name, out.String())
		}
		for _, want := range tt.want {
			if !strings.Contains(out.String(), want+"\n") {
				t.Errorf("%s: vma add printed no %q:\n%s", tt.name, want, out.String())
			}
		}
		if strings.Count(out.String(), "restrict,") != len(tt.want)-strings.Count(strings.Join(tt.want, "\n"), " the OMA") {
			t.Errorf("%s: vma add printed:\n%s", tt.name, out.String())
		}
	}
	// With -tunnel, the VMA's tunnel settings come with the rest.
	var tout, terr bytes.Buffer
	if err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-6", "-tunnel", "ssh://godwit-oma@oma.example.com:22"}, pool...), &tout, &terr); err != nil {
		t.Fatal(err)
	}
	nextPort("vma add -tunnel", tout.String())
	// The API is forwarded on a socket in the OMA's tunnel dir; the OMA holds the port.
	for _, want := range []string{"GODWIT_TUNNEL=ssh://godwit-oma@oma.example.com:22\n", "GODWIT_TUNNEL_LISTEN=" + filepath.Join(dir, "tunnels", "vma-6.sock") + "\n",
		"GODWIT_TUNNEL_KNOWN_HOSTS"} {
		if !strings.Contains(tout.String(), want) {
			t.Errorf("vma add -tunnel printed no %q:\n%s", want, tout.String())
		}
	}
	if err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-7", "-tunnel", "oma.example.com"}, pool...), &tout, &terr); err == nil ||
		!strings.Contains(err.Error(), "ssh://user@host") {
		t.Errorf("vma add -tunnel without a URL = %v, want an error showing the form", err)
	}
	for _, bad := range []struct{ port, want string }{{"19500", "VMA vma-4's"}, {"80", "want 1024-65535"}} {
		var out, errOut bytes.Buffer
		err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-5", "-api-port", bad.port}, pool...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("vma add -api-port %s = %v, want an error saying %q", bad.port, err, bad.want)
		}
	}
	var out, errOut bytes.Buffer
	if err := dispatch(context.Background(), append([]string{"vma", "authorized-keys"}, pool...), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	want := "# godwit VMAs: the OMA's sshd authorized_keys file (oma vma authorized-keys)\n" + line("vma-1", "9081") + "\n" + line("vma-2", "9082") + "\n"
	if out.String() != want {
		t.Errorf("vma authorized-keys =\n%s\nwant\n%s", out.String(), want)
	}
	// The line follows the pool and NATS address the OMA runs with: a
	// share is cut to the pool.
	out.Reset()
	if err := dispatch(context.Background(), []string{"vma", "authorized-keys", "-data", dir, "-nbd-ports", "10101-10199", "-nats-addr", "0.0.0.0:4333"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:4333",permitopen="127.0.0.1:10101" `+testKey+" godwit-vma-vma-1\n") {
		t.Errorf("vma authorized-keys with another pool:\n%s", out.String())
	}
	// A share outside the pool gets no line but a comment saying how to
	// give the VMA a new one, which oma vma nbd-ports does.
	other := []string{"-data", dir, "-nbd-ports", "12000-12003"}
	out.Reset()
	if err := dispatch(context.Background(), append([]string{"vma", "authorized-keys"}, other...), &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "\n# no line for VMA vma-1: ") || !strings.Contains(out.String(), "oma vma nbd-ports -id vma-1") || strings.Contains(out.String(), "restrict") {
		t.Errorf("vma authorized-keys with a pool that holds no share = %v:\n%s\nwant comments naming oma vma nbd-ports, no line", err, out.String())
	}
	out.Reset()
	if err := dispatch(context.Background(), append([]string{"vma", "nbd-ports", "-id", "vma-1", "-nbd-ports-per-vma", "3"}, other...), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if want := "# VMA vma-1: NBD ports 12000-12002\n" + lineOf("vma-1", 12000, 12001, 12002) + "\n"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("vma nbd-ports -id vma-1 =\n%s\nwant\n%s", out.String(), want)
	}
	if err := dispatch(context.Background(), append([]string{"vma", "nbd-ports", "-id", "vma-2", "-nbd-ports-per-vma", "3"}, other...), &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "no 3 free ports") || !strings.Contains(err.Error(), "-nbd-ports-per-vma") {
		t.Errorf("vma nbd-ports on a full pool = %v, want an error naming the limit", err)
	}
}

// TestVMANBDPortsAll: oma vma nbd-ports -all gives a share to every VMA
// registered before shares (the whole pool) and to no other; registering
// fails clearly when the pool has no share left.
func TestVMANBDPortsAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pool := []string{"-data", dir, "-nbd-ports", "10100-10105", "-nbd-ports-per-vma", "2"}
	for _, id := range []string{"old-1", "new", "old-2"} {
		if err := dispatch(context.Background(), append([]string{"vma", "add", "-id", id, "-ssh-key", testKey}, pool...), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	// old-1 and old-2 as an OMA before shares left them.
	st, err := appliance.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(func(tx *bbolt.Tx) error {
		for _, id := range []string{"old-1", "old-2"} {
			v, err := store.GetVMA(tx, id)
			if err != nil {
				return err
			}
			v.NBDPorts = nil
			if err := store.PutVMA(tx, v); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dispatch(context.Background(), append([]string{"vma", "authorized-keys"}, pool...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "permitopen="); n != 1+6+1+2+1+6 {
		t.Errorf("before: %d permitopen, want the whole pool for old-1 and old-2, a share for new:\n%s", n, out.String())
	}
	out.Reset()
	if err := dispatch(context.Background(), append([]string{"vma", "nbd-ports", "-all"}, pool...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// new keeps 10102-10103, registered second; old-1 and old-2 get the
	// lowest free shares, by id.
	for _, want := range []string{"# VMA old-1: NBD ports 10100-10101\n", "# VMA old-2: NBD ports 10104-10105\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("vma nbd-ports -all printed no %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "VMA new") {
		t.Errorf("vma nbd-ports -all gave new VMA a share again:\n%s", out.String())
	}
	err = dispatch(context.Background(), append([]string{"vma", "add", "-id", "one-too-many"}, pool...), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "10100-10105 has no 2 free ports") || !strings.Contains(err.Error(), "widen the pool") {
		t.Errorf("vma add on a full pool = %v, want an error naming the pool and the limit", err)
	}
	for _, args := range [][]string{{}, {"-id", "new", "-all"}} {
		if err := dispatch(context.Background(), append(append([]string{"vma", "nbd-ports"}, args...), pool...), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-id ID or -all") {
			t.Errorf("vma nbd-ports %v = %v, want an error asking for -id or -all", args, err)
		}
	}
}

// TestVMAAddBadSSHKey: a bad key is an error naming its flag, and nothing
// is registered.
func TestVMAAddBadSSHKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	small := filepath.Join(t.TempDir(), "rsa.pub")
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(rk.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"garbage", []string{"-ssh-key", "ssh-ed25519 nope!"}, "-ssh-key: not an SSH public key"},
		{"options", []string{"-ssh-key", `restrict ` + testKey}, "-ssh-key: want the bare public key"},
		{"ecdsa", []string{"-ssh-key", "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg="}, "-ssh-key: key type ecdsa-sha2-nistp256"},
		{"small rsa file", []string{"-ssh-key-file", small}, "-ssh-key-file " + small + ": RSA key of 2048 bits"},
		{"missing file", []string{"-ssh-key-file", filepath.Join(dir, "none.pub")}, "-ssh-key-file: "},
		{"both", []string{"-ssh-key", testKey, "-ssh-key-file", small}, "give one of them"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-1", "-data", dir}, tt.args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: vma add = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	var out, errOut bytes.Buffer
	if err := dispatch(context.Background(), []string{"vma", "add", "-id", "vma-1", "-data", dir}, &out, &errOut); err != nil {
		t.Errorf("vma-1 was registered by a refused command: %v", err)
	}
}

// TestVMAAddRefusesTheOMAsPorts: oma vma add -api-port refuses the OMA's
// own ports (its API's, NATS's, its sshd's, the NBD pool) naming api_port,
// and the lowest free port skips them.
func TestVMAAddRefusesTheOMAsPorts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := []string{"-data", dir, "-api-addr", "127.0.0.1:9081", "-nats-addr", "127.0.0.1:9082", "-sshd-port", "9083", "-nbd-ports", "9084-9090"}
	for _, port := range []string{"9081", "9082", "9083", "9084", "9090"} {
		err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-1", "-api-port", port}, own...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "api_port") || !strings.Contains(err.Error(), "the OMA's own") {
			t.Errorf("vma add -api-port %s = %v, want a refusal naming api_port", port, err)
		}
	}
	var out bytes.Buffer
	if err := dispatch(context.Background(), append([]string{"vma", "add", "-id", "vma-1"}, own...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// 9091 or, when another process holds it, a later one.
	m := regexp.MustCompile(`forwarded to 127\.0\.0\.1:(\d+) on the OMA\.`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("vma add printed no API port:\n%s", out.String())
	}
	if p, _ := strconv.Atoi(m[1]); p < 9091 {
		t.Errorf("vma add took a port of the OMA's own:\n%s", out.String())
	}
}
