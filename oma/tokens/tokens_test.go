package tokens_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

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
	secret, err := tokens.Create(st, "ops", tokens.Operate, time.Now())
	if err != nil || !strings.HasPrefix(secret, "gwt_") || len(secret) < 40 {
		t.Fatalf("Create = %q, %v", secret, err)
	}
	if h, ok := tokens.Check(st, secret); !ok || h.Name != "ops" || h.Scope != tokens.Operate {
		t.Errorf("Check(right) = %+v, %v", h, ok)
	}
	for _, wrong := range []string{"", "gwt_", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret)} {
		if _, ok := tokens.Check(st, wrong); ok {
			t.Errorf("Check(%q) accepted", wrong)
		}
	}
	if _, err := tokens.Create(st, "ops", tokens.Operate, time.Now()); err == nil {
		t.Error("a second token named ops was created")
	}
	for _, bad := range []string{"", "a b", "x/y", strings.Repeat("a", 65)} {
		if _, err := tokens.Create(st, bad, tokens.Operate, time.Now()); err == nil {
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

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestErrorsAndRevoke(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	secret, err := tokens.Create(st, "ops", tokens.Operate, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Create(st, "ops", tokens.Operate, time.Now()); !errors.Is(err, tokens.ErrExists) {
		t.Errorf("Create(taken) = %v, want ErrExists", err)
	}
	if _, err := tokens.Create(st, "a b", tokens.Operate, time.Now()); !errors.Is(err, tokens.ErrInvalidName) {
		t.Errorf("Create(bad name) = %v, want ErrInvalidName", err)
	}
	if err := tokens.Revoke(st, "nope"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
	if err := tokens.Revoke(st, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tokens.Check(st, secret); ok {
		t.Error("a revoked token still checks")
	}
	if list, err := tokens.List(st); err != nil || len(list) != 0 {
		t.Errorf("List after revoke = %v, %v", list, err)
	}
}

// TestTrackerRecordsLastUse: a use is written at once the first time,
// then at most once per RecordEvery; List shows the newest use anyway,
// and Flush writes it.
func TestTrackerRecordsLastUse(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := t0
	tr := tokens.NewTracker(st, tokens.TrackerConfig{Now: func() time.Time { return now }})
	created := t0.Add(-time.Hour)
	secret, _ := tokens.Create(st, "ops", tokens.Operate, created)
	stored := func() *time.Time {
		var tok store.Token
		_ = st.View(func(tx *bbolt.Tx) error {
			var err error
			tok, err = store.GetToken(tx, "ops")
			return err
		})
		return tok.LastUsedAt
	}
	if list, _ := tr.List(); len(list) != 1 || list[0].LastUsedAt != nil || !list[0].CreatedAt.Equal(created) {
		t.Fatalf("List before any use = %+v", list)
	}
	steps := []struct {
		at           time.Duration
		listed, kept time.Duration // last use listed and in the store, from t0
	}{
		{0, 0, 0},
		{30 * time.Second, 30 * time.Second, 0},
		{59 * time.Second, 59 * time.Second, 0},
		{61 * time.Second, 61 * time.Second, 61 * time.Second},
		{90 * time.Second, 90 * time.Second, 61 * time.Second},
	}
	for _, s := range steps {
		now = t0.Add(s.at)
		if h, ok, err := tr.Check(secret); h.Name != "ops" || !ok || err != nil {
			t.Fatalf("Check at %s = %+v, %v, %v", s.at, h, ok, err)
		}
		list, _ := tr.List()
		if got := list[0].LastUsedAt; got == nil || !got.Equal(t0.Add(s.listed)) {
			t.Errorf("at %s: listed last use %v, want %v", s.at, got, t0.Add(s.listed))
		}
		if got := stored(); got == nil || !got.Equal(t0.Add(s.kept)) {
			t.Errorf("at %s: stored last use %v, want %v", s.at, got, t0.Add(s.kept))
		}
	}
	if _, ok, _ := tr.Check("gwt_wrong"); ok {
		t.Error("a wrong secret checks")
	}
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got == nil || !got.Equal(t0.Add(90*time.Second)) {
		t.Errorf("after Flush: stored last use %v", got)
	}
	if err := tr.Revoke("ops"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := tr.Check(secret); ok {
		t.Error("a revoked token checks")
	}
	if err := tr.Flush(); err != nil {
		t.Errorf("Flush after revoke: %v", err)
	}
	if list, _ := tr.List(); len(list) != 0 {
		t.Errorf("List after revoke = %+v (a flush must not bring it back)", list)
	}
}

// TestScopes: each scope allows itself and the ones below; a token keeps
// the scope it was made with; a bad scope is refused; a token from before
// scopes checks as admin and MigrateScopes writes it down.
func TestScopes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		have, need tokens.Scope
		ok         bool
	}{
		{tokens.Read, tokens.Read, true}, {tokens.Read, tokens.Operate, false}, {tokens.Read, tokens.Admin, false},
		{tokens.Operate, tokens.Read, true}, {tokens.Operate, tokens.Operate, true}, {tokens.Operate, tokens.Admin, false},
		{tokens.Admin, tokens.Read, true}, {tokens.Admin, tokens.Operate, true}, {tokens.Admin, tokens.Admin, true},
		{"", tokens.Read, false}, {"root", tokens.Read, false}, {tokens.Admin, "", false},
	} {
		if got := tt.have.Allows(tt.need); got != tt.ok {
			t.Errorf("%q.Allows(%q) = %v, want %v", tt.have, tt.need, got, tt.ok)
		}
	}
	for in, want := range map[string]tokens.Scope{"": tokens.Operate, "read": tokens.Read, "ADMIN": tokens.Admin, "operate": tokens.Operate} {
		if got, err := tokens.ParseScope(in); got != want || err != nil {
			t.Errorf("ParseScope(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	if _, err := tokens.ParseScope("all"); !errors.Is(err, tokens.ErrInvalidScope) {
		t.Errorf("ParseScope(all) = %v, want ErrInvalidScope", err)
	}
	st := openStore(t)
	if _, err := tokens.Create(st, "x", "all", time.Now()); !errors.Is(err, tokens.ErrInvalidScope) {
		t.Errorf("Create(scope all) = %v, want ErrInvalidScope", err)
	}
	reader, _ := tokens.Create(st, "reader", tokens.Read, time.Now())
	if h, ok := tokens.Check(st, reader); !ok || h.Scope != tokens.Read {
		t.Errorf("Check(reader) = %+v, %v", h, ok)
	}
	// A token as an OMA from before scopes stored it.
	old := "gwt_old"
	sum := sha256.Sum256([]byte(old))
	if err := st.Update(func(tx *bbolt.Tx) error {
		return store.PutToken(tx, store.Token{Name: "old", Hash: sum[:], CreatedAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	if h, ok := tokens.Check(st, old); !ok || h.Scope != tokens.Admin {
		t.Errorf("Check(old) = %+v, %v, want admin", h, ok)
	}
	if n, err := tokens.MigrateScopes(st); n != 1 || err != nil {
		t.Errorf("MigrateScopes = %d, %v, want 1", n, err)
	}
	if n, err := tokens.MigrateScopes(st); n != 0 || err != nil {
		t.Errorf("MigrateScopes again = %d, %v, want 0", n, err)
	}
	_ = st.View(func(tx *bbolt.Tx) error {
		tok, err := store.GetToken(tx, "old")
		if err != nil || tok.Scope != "admin" {
			t.Errorf("stored old token = %+v, %v, want scope admin", tok, err)
		}
		return nil
	})
	list, _ := tokens.List(st)
	for _, i := range list {
		if want := map[string]tokens.Scope{"old": tokens.Admin, "reader": tokens.Read}[i.Name]; i.Scope != want {
			t.Errorf("List: %s has scope %q, want %q", i.Name, i.Scope, want)
		}
	}
}
