package identity_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/vma/identity"
)

func TestLoadOrCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, err := identity.LoadOrCreate(dir, "vma-1")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "identity.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file %v, %v: want mode 0600", fi, err)
	}
	again, err := identity.LoadOrCreate(dir, "")
	if err != nil || again.ID != "vma-1" || again.PublicKey() != id.PublicKey() {
		t.Fatalf("reload = %+v, %v", again, err)
	}
	// A box sealed to the announced public key opens with the reloaded key.
	s, _ := seal.Seal(id.PublicKey(), []byte("pw"))
	if got, err := seal.Open(again.Key, s); err != nil || string(got) != "pw" {
		t.Errorf("open after reload = %q, %v", got, err)
	}
	if _, err := identity.LoadOrCreate(dir, "vma-2"); err == nil {
		t.Error("a data dir of vma-1 took id vma-2")
	}
	if _, err := identity.LoadOrCreate(t.TempDir(), "bad.id"); err == nil {
		t.Error("a hostile id was accepted")
	}
	made, err := identity.LoadOrCreate(t.TempDir(), "")
	if err != nil || len(made.ID) != 12 {
		t.Errorf("made-up id = %q, %v", made.ID, err)
	}
}
