// Package printable makes strings that come from outside (VM names from
// vCenter, errors and ids from a VMA) safe to write to a terminal.
//
// A VM may be named with an escape sequence: written raw, it could move
// the cursor, rewrite earlier lines, change the window title or reorder
// the text that follows (a bidi override). [Quote] leaves ordinary text as
// it is and quotes the rest as a Go string literal, in which every such
// character is an escape such as \x1b or \u202e.
//
// The appliances' logs need nothing more: log/slog's text handler quotes
// a value, a key and the message the same way whenever they hold a
// character that is not printable (all but DEL, which terminals ignore).
package printable

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Quote returns s unchanged when it is plain text: valid UTF-8 made of
// printable characters (letters, marks, numbers, punctuation, symbols) and
// the ASCII space, with no double quote or backslash. Otherwise it returns
// s as a double-quoted Go string literal (strconv.Quote), in which control
// characters (C0 such as ESC, CR and BEL, DEL, C1), format characters
// (bidi overrides and isolates, zero-width ones), other spaces and
// invalid bytes are escapes. The quotes and backslashes also keep a name
// that merely looks like an escape ("a\x1b") apart from one that holds it.
func Quote(s string) string {
	if Plain(s) {
		return s
	}
	return strconv.Quote(s)
}

// Plain reports whether Quote returns s unchanged.
func Plain(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '"' || r == '\\' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
