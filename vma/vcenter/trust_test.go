package vcenter_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/vma/vcenter"
)

// otherCA is the PEM of a self-signed CA certificate that signed nothing
// the simulator serves.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the simulator's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// hexPairs writes b as colon-separated hex pairs, upper case.
func hexPairs(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// TestLoginPinnedByRequest logs in to the simulator trusting it only by
// what a request carries: its CA as PEM content, or its certificate's
// SHA-1 or SHA-256 thumbprint. A wrong pin fails as an untrusted
// certificate does (unreachable); a malformed one is an invalid request.
func TestLoginPinnedByRequest(t *testing.T) {
	sim := startSim(t)
	caPEM, err := os.ReadFile(sim.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("%s holds no PEM", sim.CAFile)
	}
	sha1Sum, sha256Sum := sha1.Sum(block.Bytes), sha256.Sum256(block.Bytes)
	sha1Print, sha256Print := hexPairs(sha1Sum[:]), hexPairs(sha256Sum[:])
	wrong := sha256.Sum256([]byte("another certificate"))
	other := otherCA(t)

	tests := []struct {
		name string
		cfg  vcenter.Config
		want string // a FailureCode; "" for a login
	}{
		{"ca pem", vcenter.Config{CAPEM: string(caPEM)}, ""},
		{"ca pem besides the ca file", vcenter.Config{CAFile: sim.CAFile, CAPEM: other}, ""},
		{"sha-256 thumbprint", vcenter.Config{Thumbprint: sha256Print}, ""},
		{"sha-1 thumbprint", vcenter.Config{Thumbprint: sha1Print}, ""},
		{"lower-case thumbprint", vcenter.Config{Thumbprint: strings.ToLower(sha256Print)}, ""},
		{"wrong ca pem", vcenter.Config{CAPEM: other}, events.FailureUnreachable},
		{"wrong thumbprint", vcenter.Config{Thumbprint: hexPairs(wrong[:])}, events.FailureUnreachable},
		{"wrong thumbprint, the ca file trusts it", vcenter.Config{CAFile: sim.CAFile, Thumbprint: hexPairs(wrong[:20])}, events.FailureUnreachable},
		{"wrong thumbprint, insecure", vcenter.Config{Insecure: true, Thumbprint: hexPairs(wrong[:])}, events.FailureUnreachable},
		{"ca pem without a certificate", vcenter.Config{CAPEM: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}, events.FailureInvalid},
		{"thumbprint of 16 bytes", vcenter.Config{Thumbprint: hexPairs(wrong[:16])}, events.FailureInvalid},
		{"thumbprint without colons", vcenter.Config{Thumbprint: strings.ReplaceAll(sha256Print, ":", "")}, events.FailureInvalid},
		{"both", vcenter.Config{CAPEM: string(caPEM), Thumbprint: sha256Print}, events.FailureInvalid},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Host, cfg.Username, cfg.Password = sim.Host, sim.Username, secret.New(sim.Password)
			s, err := vcenter.Login(ctx, cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Login = %v, want a session", err)
				}
				defer s.Close()
				// VDDK's thumbprint is read with the same trust.
				if got, err := s.Thumbprint(ctx); err != nil || got != sha1Print {
					t.Errorf("Thumbprint = %q, %v, want %q", got, err, sha1Print)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Login succeeded, want %s", tt.want)
			}
			t.Logf("Login: %v", err)
			if got := vcenter.FailureCode(err); got != tt.want {
				t.Errorf("FailureCode(%v) = %q, want %q", err, got, tt.want)
			}
			if tt.want == events.FailureInvalid && !errors.Is(err, vcenter.ErrTrust) {
				t.Errorf("Login = %v, want ErrTrust", err)
			}
			if tt.want == events.FailureUnreachable && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("Login = %v, want a certificate error", err)
			}
		})
	}
}
