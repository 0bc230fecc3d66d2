package atrest_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/secret"
)

const password = "Vc-Pa55-w0rd!"

// TestKeyFile: the first Load creates the key file, mode 0600, with no
// trace of a sealed value in it; a second Load reads the same key; loads
// racing to create it agree on one key.
func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "at-rest.key")
	k1, err := atrest.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	k2, err := atrest.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.ID() != k2.ID() || len(k1.ID()) != 16 {
		t.Errorf("ids %q and %q: want the same key, 16 hex digits", k1.ID(), k2.ID())
	}
	sealed, err := k1.Seal(secret.New(password), "vcenter:a")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(sealed, "vcenter:a"); err != nil || got.Reveal() != password {
		t.Errorf("Open with the reloaded key = %v, %v", got, err)
	}

	racy := filepath.Join(t.TempDir(), "at-rest.key")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			k, err := atrest.Load(racy)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID()
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent loads made different keys: %v", ids)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(racy), ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestKeyFileRefused: a key file others may read, or that is no key, is
// refused with a message that says what to do; nothing replaces it.
func TestKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if _, err := atrest.Load(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"readable by others", string(data), 0o644, "chmod 600"},
		{"writable by the group", string(data), 0o620, "chmod 600"},
		{"not a key", "hello\n", 0o600, "not a godwit at-rest key"},
		{"short key", "godwit at-rest key v1\nAAAA\n", 0o600, "not 32 bytes"},
		{"empty", "", 0o600, "not a godwit at-rest key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := atrest.Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load = %v, want an error naming %s and saying %q", err, path, tt.want)
			}
			if after, _ := os.ReadFile(path); string(after) != tt.content {
				t.Error("the refused file was changed")
			}
		})
	}
	if _, err := atrest.Load(filepath.Join(dir, "missing-dir", "k")); err == nil {
		t.Error("Load in a directory that does not exist made no error")
	}
}

// TestSealOpen: a sealed value holds no trace of the password, differs
// each time, and opens only under the same key and for the same context;
// a changed byte anywhere makes it refuse.
func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	k, err := atrest.Load(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := atrest.Load(filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := k.Seal(secret.New(password), "vcenter:prod")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := k.Seal(secret.New(password), "vcenter:prod")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s1, []byte(password)) || bytes.Equal(s1, s2) {
		t.Errorf("sealed %x: want no plain text, and a new nonce each time", s1)
	}
	if got, err := k.Open(s1, "vcenter:prod"); err != nil || got.Reveal() != password {
		t.Fatalf("Open = %q, %v", got.Reveal(), err)
	}
	empty, err := k.Seal(secret.New(""), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(empty, "x"); err != nil || got.Reveal() != "" {
		t.Errorf("Open of an empty secret = %q, %v", got.Reveal(), err)
	}

	var refusals []error
	_, err = other.Open(s1, "vcenter:prod")
	if !errors.Is(err, atrest.ErrWrongKey) || !strings.Contains(err.Error(), other.ID()) {
		t.Errorf("Open under another key = %v, want ErrWrongKey naming %s", err, other.ID())
	}
	refusals = append(refusals, err)
	_, err = k.Open(s1, "vcenter:test")
	if err == nil {
		t.Error("a value sealed for vcenter:prod opened for vcenter:test")
	}
	refusals = append(refusals, err)
	for i := range s1 {
		bad := bytes.Clone(s1)
		bad[i] ^= 0x01
		if _, err := k.Open(bad, "vcenter:prod"); err == nil {
			t.Fatalf("byte %d changed: Open still succeeded", i)
		}
	}
	for _, n := range []int{0, 1, 20, len(s1) - 1} {
		_, err := k.Open(s1[:n], "vcenter:prod")
		if err == nil {
			t.Fatalf("cut to %d bytes: Open succeeded", n)
		}
		refusals = append(refusals, err)
	}
	for _, err := range refusals {
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("the error %q shows the password", err)
		}
	}
}
