// Package secret holds a value, such as a vCenter password, that never
// prints: fmt (every verb, %v, %+v, %#v, %s, %q, %x, %d...), log/slog
// (text and JSON handlers, alone or inside a struct) and encoding/json
// show "REDACTED". The value is read only by calling [String.Reveal], so
// every place that hands it on is easy to find.
//
// A String travels from where a sealed box is opened (vcenter.LoginSealed)
// to the vCenter login and to nbdkit's password pipe; nothing else holds
// the plain password.
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what a String shows in place of its value.
const Redacted = "REDACTED"

// String is a secret string. Its zero value is the empty secret. Copies
// share the value, which is never changed.
//
// The value sits behind a pointer, so that even fmt's error paths that
// bypass the methods (%p, %T) show an address or the type, never the text.
type String struct {
	v *string
}

// New returns a String holding s.
func New(s string) String { return String{v: &s} }

// Reveal returns the plain value. Call it only where the value leaves the
// process for the party it is meant for (a login, a pipe to nbdkit).
func (s String) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// Empty reports whether the value is the empty string.
func (s String) Empty() bool { return s.v == nil || *s.v == "" }

// Len returns the length of the value in bytes.
func (s String) Len() int { return len(s.Reveal()) }

// String returns "REDACTED".
func (String) String() string { return Redacted }

// GoString returns "REDACTED".
func (String) GoString() string { return Redacted }

// Format writes "REDACTED" for every verb, so that no verb (%d, %x, %q, a
// wrong one) reaches the value.
func (String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue returns "REDACTED".
func (String) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText returns "REDACTED".
func (String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// UnmarshalText reads the value (so a JSON string or a flag can set one):
// a String is never written out, but it may be read in.
func (s *String) UnmarshalText(b []byte) error {
	*s = New(string(b))
	return nil
}

// MarshalJSON returns the JSON string "REDACTED".
func (String) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
