package printable_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/godwit/godwit/printable"
)

// dangerous lists the characters a terminal acts on, or that reorder what
// follows: none may come out of Quote or the text log handler raw.
var dangerous = map[string]string{
	"ESC": "\x1b", "CSI": "\x1b[", "CR": "\r", "LF": "\n", "BEL": "\a", "BS": "\b", "TAB": "\t", "NUL": "\x00",
	"DEL": "\x7f", "C1 CSI": "\u009b", "C1 OSC": "\u009d", "C1 NEL": "\u0085",
	"RLO": "\u202e", "LRO": "\u202d", "RLE": "\u202b", "PDF": "\u202c", "RLI": "\u2067", "PDI": "\u2069",
	"RLM": "\u200f", "ZWSP": "\u200b", "BOM": "\ufeff", "LS": "\u2028", "PS": "\u2029", "NBSP": "\u00a0",
	"invalid UTF-8": "\xff\xfe", "lone C1 byte": "\x9b",
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"ascii", "PGWINTESTBIOS", "PGWINTESTBIOS"},
		{"spaces and punctuation", "web 01 (prod) - copy #2", "web 01 (prod) - copy #2"},
		{"unicode letters", "café-サーバー-Ωmega", "café-サーバー-Ωmega"},
		{"empty", "", ""},
		{"title change", "vm\x1b]0;pwned\a", `"vm\x1b]0;pwned\a"`},
		{"colour", "\x1b[31mred\x1b[0m", `"\x1b[31mred\x1b[0m"`},
		{"carriage return over the line", "ok\rFAKE", `"ok\rFAKE"`},
		{"C1 CSI", "a\u009b2J", `"a\u009b2J"`},
		{"bidi override", "invoice\u202efdp.exe", `"invoice\u202efdp.exe"`},
		{"looks like an escape", `a\x1b`, `"a\\x1b"`},
		{"quote", `say "hi"`, `"say \"hi\""`},
		{"invalid UTF-8", "a\xffb", `"a\xffb"`},
	} {
		if got := printable.Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestNothingRawComesOut: for each dangerous character, neither Quote nor
// log/slog's text handler (the one the oma and vma binaries log with)
// writes it raw. The one exception is the handler and DEL, which it counts
// as safe (terminals ignore it): a value holding only DEL stays unquoted.
func TestNothingRawComesOut(t *testing.T) {
	t.Parallel()
	for name, c := range dangerous {
		in := "vm-" + c + "-name"
		if got := printable.Quote(in); bytes.Contains([]byte(got), []byte(c)) {
			t.Errorf("%s: Quote(%q) = %q: holds it raw", name, in, got)
		}
		var b bytes.Buffer
		log := slog.New(slog.NewTextHandler(&b, nil))
		log.Info("job created "+in, "vm", in, "err", fmt.Errorf("find VM %s: gone", in), in, "key")
		if c != "\x7f" && bytes.Contains(b.Bytes()[:b.Len()-1], []byte(c)) { // the line's own newline aside
			t.Errorf("%s: the text handler wrote it raw: %q", name, b.String())
		}
	}
}

func ExampleQuote() {
	fmt.Println(printable.Quote("PGWINTESTBIOS"))
	fmt.Println(printable.Quote("web\x1b[2J01"))
	fmt.Println(printable.Quote("report\u202efdp.exe"))
	// Output:
	// PGWINTESTBIOS
	// "web\x1b[2J01"
	// "report\u202efdp.exe"
}
