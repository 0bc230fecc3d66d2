// Package tokens creates and checks the OMA's API bearer tokens. A token
// is shown once, when created; only its SHA-256 is stored, and checking
// compares hashes in constant time.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"regexp"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/store"
)

// prefix marks godwit tokens, so secret scanners can find leaked ones.
const prefix = "gwt_"

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Create makes a token named name, stores its hash, and returns the
// secret. Names are unique.
func Create(st *store.Store, name string, now time.Time) (string, error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("token name %q: use 1 to 64 letters, digits, '.', '-' or '_'", name)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	secret := prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	err := st.Update(func(tx *bbolt.Tx) error {
		if store.HasToken(tx, name) {
			return fmt.Errorf("a token named %q exists already", name)
		}
		return store.PutToken(tx, store.Token{Name: name, Hash: sum[:], CreatedAt: now.UTC()})
	})
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return secret, nil
}

// Check returns the name of the token whose secret this is.
func Check(st *store.Store, secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	var all []store.Token
	if err := st.View(func(tx *bbolt.Tx) error {
		var err error
		all, err = store.Tokens(tx)
		return err
	}); err != nil {
		return "", false
	}
	name, ok := "", false
	for _, t := range all {
		if subtle.ConstantTimeCompare(t.Hash, sum[:]) == 1 {
			name, ok = t.Name, true
		}
	}
	return name, ok
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
