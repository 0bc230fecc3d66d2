// Package atrest encrypts the OMA's secrets at rest, such as the passwords
// of registered vCenters: AES-256-GCM under a key that lives in its own
// file, outside state.db, so that a copy of the database alone gives away
// no password.
//
// The key file is created on first use with 32 random bytes, mode 0600,
// and refused later when another user may read it. Each sealed value
// names the key it was sealed under (a short id derived from the key) and
// is bound to a context string, such as "vcenter:prod-vc1": it opens only
// under the same key and for the same context, so a ciphertext moved from
// one record to another does not open.
package atrest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/godwit/godwit/secret"
)

// header is the key file's first line.
const header = "godwit at-rest key v1"

// version is the first byte of a sealed value.
const version = 1

// idSize is the length of a key id in a sealed value.
const idSize = 8

// ErrWrongKey says a sealed value was sealed under another key: the key
// file was replaced or belongs to another OMA.
var ErrWrongKey = errors.New("sealed under another key")

// Key seals and opens values. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
	id   [idSize]byte
}

// Load reads the key at path, creating it (and nothing else: the
// directory must exist) when there is no file there. It refuses a file
// that its group or others may read or write, and one that is not a key.
func Load(path string) (*Key, error) {
	raw, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw, err = createKeyFile(path)
		if errors.Is(err, fs.ErrExist) { // created meanwhile by another process
			raw, err = readKeyFile(path)
		}
	}
	if err != nil {
		return nil, err
	}
	return newKey(raw)
}

// newKey makes a Key of 32 bytes.
func newKey(raw []byte) (*Key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	k := &Key{aead: aead}
	sum := sha256.Sum256(append([]byte("godwit at-rest key id\x00"), raw...))
	copy(k.id[:], sum[:])
	return k, nil
}

// ID is the key's id, as sealed values name it: hex, 16 characters.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

// Seal encrypts plain for context: version, key id, nonce, then the
// ciphertext with its tag.
func (k *Key) Seal(plain secret.String, context string) ([]byte, error) {
	out := make([]byte, 1+idSize+k.aead.NonceSize(), 1+idSize+k.aead.NonceSize()+len(plain.Reveal())+k.aead.Overhead())
	out[0] = version
	copy(out[1:], k.id[:])
	nonce := out[1+idSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return k.aead.Seal(out, nonce, []byte(plain.Reveal()), additional(context)), nil
}

// Open decrypts what Seal returned for the same context. A value sealed
// under another key is ErrWrongKey (wrapped, naming both ids); a value
// changed, cut, or sealed for another context is an error too.
func (k *Key) Open(sealed []byte, context string) (secret.String, error) {
	head := 1 + idSize + k.aead.NonceSize()
	switch {
	case len(sealed) < head+k.aead.Overhead():
		return secret.String{}, fmt.Errorf("open %s: %d bytes is too short to be a sealed value", context, len(sealed))
	case sealed[0] != version:
		return secret.String{}, fmt.Errorf("open %s: unknown format %d", context, sealed[0])
	case !bytes.Equal(sealed[1:1+idSize], k.id[:]):
		return secret.String{}, fmt.Errorf("open %s: %w %s, this OMA's key is %s (was the key file replaced?)",
			context, ErrWrongKey, hex.EncodeToString(sealed[1:1+idSize]), k.ID())
	}
	plain, err := k.aead.Open(nil, sealed[1+idSize:head], sealed[head:], additional(context))
	if err != nil {
		return secret.String{}, fmt.Errorf("open %s: the sealed value was changed or belongs to another record", context)
	}
	return secret.New(string(plain)), nil
}

// additional is the data a sealed value is bound to besides its key.
func additional(context string) []byte { return []byte("godwit at-rest v1\x00" + context) }

// readKeyFile reads and checks the key file at path.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("at-rest key %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("at-rest key %s: mode %#o lets others read or change it: chmod 600 %s", path, perm, path)
	}
	data := make([]byte, 256)
	n, _ := f.Read(data)
	text := strings.TrimSpace(string(data[:n]))
	first, rest, _ := strings.Cut(text, "\n")
	if first != header {
		return nil, fmt.Errorf("at-rest key %s: not a godwit at-rest key (its first line is not %q)", path, header)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("at-rest key %s: the key is not 32 bytes of base64", path)
	}
	return raw, nil
}

// createKeyFile writes a new key at path, mode 0600, durably; it fails
// with fs.ErrExist when the file is there.
func createKeyFile(path string) ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	defer os.Remove(tmp.Name())
	text := header + "\n" + base64.StdEncoding.EncodeToString(raw) + "\n"
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	// A link, not a rename: it fails when another process made the file first.
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("at-rest key: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return raw, nil
}
