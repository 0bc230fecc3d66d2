package events

import "log/slog"

// SealScheme names how a Sealed box is made: an anonymous NaCl box
// (X25519, XSalsa20-Poly1305) as golang.org/x/crypto/nacl/box.SealAnonymous
// makes it.
const SealScheme = "nacl-box-anonymous"

// Sealed is a secret sealed to one VMA's X25519 public key. Only the holder
// of the matching private key can open it. Its String and LogValue never
// show the box.
type Sealed struct {
	// Scheme is SealScheme.
	Scheme string `json:"scheme"`
	// Recipient is the standard base64 of the public key it is sealed to.
	Recipient string `json:"recipient"`
	// Box is the standard base64 of the sealed box.
	Box string `json:"box"`
}

// String returns "REDACTED".
func (Sealed) String() string { return "REDACTED" }

// LogValue returns "REDACTED".
func (Sealed) LogValue() slog.Value { return slog.StringValue("REDACTED") }
