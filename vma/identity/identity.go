// Package identity is a VMA's identity, kept in its data dir: its id and
// the X25519 key pair that secrets (vCenter passwords) are sealed to. The
// private key file is mode 0600 and never leaves the VMA.
package identity

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/curve25519"

	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/seal"
)

// fileName is the identity file in the data dir.
const fileName = "identity.json"

// Identity is a VMA's id and key pair.
type Identity struct {
	ID  string
	Key seal.KeyPair
}

// PublicKey returns the public key in standard base64, as events carry it.
func (i Identity) PublicKey() string { return seal.EncodeKey(i.Key.Public) }

type stored struct {
	ID         string `json:"id"`
	PrivateKey string `json:"private_key"`
}

// LoadOrCreate reads the identity in dataDir, creating it on first start.
// id, when not empty, names the VMA on first start and must match the
// stored id afterwards; when empty, a stored id is used, or one is made up.
func LoadOrCreate(dataDir, id string) (Identity, error) {
	path := filepath.Join(dataDir, fileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(dataDir, path, id)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("read identity: %w", err)
	}
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return Identity{}, fmt.Errorf("read identity %s: %w", path, err)
	}
	if id != "" && id != s.ID {
		return Identity{}, fmt.Errorf("identity %s is VMA %q, not %q: use another data dir for another VMA", path, s.ID, id)
	}
	priv, err := seal.DecodeKey(s.PrivateKey)
	if err != nil {
		return Identity{}, fmt.Errorf("read identity %s: private key: %w", path, err)
	}
	return fromPrivate(s.ID, priv)
}

func create(dataDir, path, id string) (Identity, error) {
	if id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id = fmt.Sprintf("vma-%x", b)
	}
	if err := subject.ValidID(id); err != nil {
		return Identity{}, fmt.Errorf("vma id: %w", err)
	}
	kp, err := seal.NewKeyPair()
	if err != nil {
		return Identity{}, err
	}
	b, err := json.Marshal(stored{ID: id, PrivateKey: base64.StdEncoding.EncodeToString(kp.Private[:])})
	if err != nil {
		return Identity{}, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Identity{}, fmt.Errorf("write identity: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Identity{}, fmt.Errorf("write identity: %w", err)
	}
	return Identity{ID: id, Key: kp}, nil
}

func fromPrivate(id string, priv *[seal.KeySize]byte) (Identity, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return Identity{}, fmt.Errorf("derive public key: %w", err)
	}
	var p [seal.KeySize]byte
	copy(p[:], pub)
	return Identity{ID: id, Key: seal.KeyPair{Public: &p, Private: priv}}, nil
}
