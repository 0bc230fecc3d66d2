package seal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/godwit/godwit/seal"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	kp, err := seal.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := seal.NewKeyPair()
	s, err := seal.Seal(seal.EncodeKey(kp.Public), []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.Box, "hunter2") {
		t.Fatal("plaintext in the box")
	}
	got, err := seal.Open(kp, s)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := seal.Open(other, s); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open with another key = %v, want ErrOpen", err)
	}
	s.Box = s.Box[:len(s.Box)-4] + "AAA="
	if _, err := seal.Open(kp, s); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open of a tampered box = %v, want ErrOpen", err)
	}
	if _, err := seal.Seal("short", []byte("x")); err == nil {
		t.Error("Seal to a bad key succeeded")
	}
}
