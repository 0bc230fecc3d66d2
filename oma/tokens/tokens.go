// Package tokens creates, lists, revokes and checks the OMA's API bearer
// tokens. A token is shown once, when created; only its SHA-256 is
// stored, with its name and Scope, and checking compares hashes in
// constant time. Checking reads
// the store every time, so a revoked token fails at once. A Tracker also
// records when each token was last used, writing it at most once per
// interval (a minute by default) per token.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/store"
)

// prefix marks godwit tokens, so secret scanners can find leaked ones.
const prefix = "gwt_"

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Create makes a token named name with scope, stores its hash, and
// returns the secret. Names are unique. Errors wrap ErrInvalidName,
// ErrInvalidScope or ErrExists.
func Create(st *store.Store, name string, scope Scope, now time.Time) (string, error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("token name %q: use 1 to 64 letters, digits, '.', '-' or '_': %w", name, ErrInvalidName)
	}
	if scope.rank() == 0 {
		return "", fmt.Errorf("token %q: scope %q: want read, operate or admin: %w", name, scope, ErrInvalidScope)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	secret := prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	err := st.Update(func(tx *bbolt.Tx) error {
		if store.HasToken(tx, name) {
			return fmt.Errorf("a token named %q exists already: %w", name, ErrExists)
		}
		return store.PutToken(tx, store.Token{Name: name, Hash: sum[:], Scope: string(scope), CreatedAt: now.UTC()})
	})
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return secret, nil
}

// Holder is who a checked token belongs to.
type Holder struct {
	// Name is the token's name.
	Name string
	// Scope is what it may do.
	Scope Scope
}

// Check returns the name and scope of the token whose secret this is.
func Check(st *store.Store, secret string) (Holder, bool) {
	sum := sha256.Sum256([]byte(secret))
	var all []store.Token
	if err := st.View(func(tx *bbolt.Tx) error {
		var err error
		all, err = store.Tokens(tx)
		return err
	}); err != nil {
		return Holder{}, false
	}
	var h Holder
	ok := false
	for _, t := range all {
		if subtle.ConstantTimeCompare(t.Hash, sum[:]) == 1 {
			h, ok = Holder{Name: t.Name, Scope: scopeOf(t.Scope)}, true
		}
	}
	return h, ok
}

// MigrateScopes gives every token from before scopes (none stored) the
// admin scope, which is what it could do, and returns how many it changed.
func MigrateScopes(st *store.Store) (int, error) {
	n := 0
	err := st.Update(func(tx *bbolt.Tx) error {
		all, err := store.Tokens(tx)
		if err != nil {
			return err
		}
		for _, t := range all {
			if t.Scope != "" {
				continue
			}
			t.Scope = string(Admin)
			if err := store.PutToken(tx, t); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("migrate token scopes: %w", err)
	}
	return n, nil
}

// Count returns how many tokens exist.
func Count(st *store.Store) (int, error) {
	n := 0
	err := st.View(func(tx *bbolt.Tx) error {
		all, err := store.Tokens(tx)
		n = len(all)
		return err
	})
	return n, err
}

// Info is what may be shown about a token: never its secret nor its hash.
type Info struct {
	Name      string    `json:"name"`
	Scope     Scope     `json:"scope"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the token last authenticated a request, or nil.
	LastUsedAt *time.Time `json:"last_used_at"`
}

// List returns every token's name, creation and last use, by name.
func List(st *store.Store) ([]Info, error) {
	var out []Info
	err := st.View(func(tx *bbolt.Tx) error {
		all, err := store.Tokens(tx)
		for _, t := range all {
			out = append(out, Info{Name: t.Name, Scope: scopeOf(t.Scope), CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// Revoke deletes the token named name: it authenticates nothing from now
// on. It returns an error wrapping ErrNotFound for an unknown name.
func Revoke(st *store.Store, name string) error {
	err := st.Update(func(tx *bbolt.Tx) error { return store.DeleteToken(tx, name) })
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke token %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", name, err)
	}
	return nil
}
