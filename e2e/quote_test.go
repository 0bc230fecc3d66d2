package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuoteControls: scripts/quote-controls.sh, through which make demo
// prints what the APIs answered, writes every character a terminal acts on
// as an escape, and leaves other text, UTF-8 and invalid bytes included,
// as it is.
func TestQuoteControls(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs("../scripts/quote-controls.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "job repl-1: {\"state\":\"pending\"}\n", "job repl-1: {\"state\":\"pending\"}\n"},
		{"utf-8 and tab", "café\tサーバー\n", "café\tサーバー\n"},
		{"window title and bell", "vm\x1b]0;pwned\a\n", `vm\x1b]0;pwned\x07` + "\n"},
		{"carriage return", "failed\rcompleted\n", `failed\x0dcompleted` + "\n"},
		{"DEL and NUL", "a\x7fb\x00c\n", `a\x7fb\x00c` + "\n"},
		{"C1 CSI and NEL", "a\u009b2J\u0085b\n", `a\u009b2J\u0085b` + "\n"},
		{"bidi and zero-width", "x\u202ey\u2067z\u200bw\u2028v\n", `x\u202ey\u2067z\u200bw\u2028v` + "\n"},
		{"invalid UTF-8", "a\xffb\xc2\n", "a\xffb\xc2\n"},
		{"no final newline", "end\x1b", `end\x1b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(script)
			cmd.Stdin = strings.NewReader(tc.in)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("quote-controls.sh: %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("quote-controls.sh(%q) = %q, want %q", tc.in, out, tc.want)
			}
		})
	}
}
