// Package seal seals secrets, such as a vCenter password, to a VMA's X25519
// public key with an anonymous NaCl box, so that only that VMA can open
// them. A sealed secret can travel through streams and logs; the plaintext
// never does.
package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"

	"github.com/godwit/godwit/events"
)

// KeySize is the size of public and private keys.
const KeySize = 32

// ErrOpen is returned when a box cannot be opened: the wrong key, or
// tampering.
var ErrOpen = errors.New("sealed box does not open")

// KeyPair is an X25519 key pair.
type KeyPair struct {
	Public, Private *[KeySize]byte
}

// NewKeyPair creates a key pair.
func NewKeyPair() (KeyPair, error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate x25519 key: %w", err)
	}
	return KeyPair{Public: pub, Private: priv}, nil
}

// EncodeKey returns the standard base64 of a key, as events carry it.
func EncodeKey(k *[KeySize]byte) string { return base64.StdEncoding.EncodeToString(k[:]) }

// DecodeKey parses a key in standard base64.
func DecodeKey(s string) (*[KeySize]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return nil, fmt.Errorf("x25519 key %q: want %d bytes in standard base64", s, KeySize)
	}
	var k [KeySize]byte
	copy(k[:], b)
	return &k, nil
}

// Seal seals secret to the public key recipient (standard base64).
func Seal(recipient string, secret []byte) (events.Sealed, error) {
	pub, err := DecodeKey(recipient)
	if err != nil {
		return events.Sealed{}, fmt.Errorf("seal: %w", err)
	}
	b, err := box.SealAnonymous(nil, secret, pub, rand.Reader)
	if err != nil {
		return events.Sealed{}, fmt.Errorf("seal: %w", err)
	}
	return events.Sealed{Scheme: events.SealScheme, Recipient: EncodeKey(pub), Box: base64.StdEncoding.EncodeToString(b)}, nil
}

// Open opens a box sealed to kp.
func Open(kp KeyPair, s events.Sealed) ([]byte, error) {
	if s.Scheme != events.SealScheme {
		return nil, fmt.Errorf("open: scheme %q: %w", s.Scheme, ErrOpen)
	}
	if s.Recipient != EncodeKey(kp.Public) {
		return nil, fmt.Errorf("open: sealed to another key: %w", ErrOpen)
	}
	b, err := base64.StdEncoding.DecodeString(s.Box)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrOpen)
	}
	out, ok := box.OpenAnonymous(nil, b, kp.Public, kp.Private)
	if !ok {
		return nil, fmt.Errorf("open: %w", ErrOpen)
	}
	return out, nil
}
