package tokens_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
)

func TestCreateAndCheck(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tokens.Create(st, "ops", time.Now())
	if err != nil || !strings.HasPrefix(secret, "gwt_") || len(secret) < 40 {
		t.Fatalf("Create = %q, %v", secret, err)
	}
	if name, ok := tokens.Check(st, secret); !ok || name != "ops" {
		t.Errorf("Check(right) = %q, %v", name, ok)
	}
	for _, wrong := range []string{"", "gwt_", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret)} {
		if _, ok := tokens.Check(st, wrong); ok {
			t.Errorf("Check(%q) accepted", wrong)
		}
	}
	if _, err := tokens.Create(st, "ops", time.Now()); err == nil {
		t.Error("a second token named ops was created")
	}
	for _, bad := range []string{"", "a b", "x/y", strings.Repeat("a", 65)} {
		if _, err := tokens.Create(st, bad, time.Now()); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	if n, _ := tokens.Count(st); n != 1 {
		t.Errorf("Count = %d", n)
	}
	st.Close()
	db, _ := os.ReadFile(path)
	if bytes.Contains(db, []byte(secret)) || bytes.Contains(db, []byte(secret[4:])) {
		t.Error("the token secret is in the database")
	}
}
