package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/godwit/godwit/secret"
)

const plain = "hunter2-S3cr3t"

// holder is a struct such as a config or a request that carries a secret.
type holder struct {
	Host     string
	Password secret.String
	Ptr      *secret.String
	Any      any
}

func newHolder() holder {
	p := secret.New(plain)
	return holder{Host: "vc.example", Password: secret.New(plain), Ptr: &p, Any: secret.New(plain)}
}

func TestNeverPrints(t *testing.T) {
	t.Parallel()
	s := secret.New(plain)
	h := newHolder()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p", "%T", "%10.3s"} {
		for name, arg := range map[string]any{"value": s, "pointer": &s, "struct": h, "struct pointer": &h, "slice": []secret.String{s}, "map": map[string]secret.String{"pw": s}} {
			got := fmt.Sprintf(verb, arg)
			if strings.Contains(got, plain) || strings.Contains(got, fmt.Sprintf("%x", plain)) {
				t.Errorf("Sprintf(%q, %s) = %q: shows the secret", verb, name, got)
			}
		}
	}
	if got := fmt.Sprint(s); got != secret.Redacted {
		t.Errorf("Sprint(s) = %q, want %q", got, secret.Redacted)
	}
	if got := fmt.Sprintf("%+v", h); !strings.Contains(got, "Password:REDACTED") {
		t.Errorf("Sprintf(%%+v, holder) = %q, want Password:REDACTED", got)
	}
}

func TestSlog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			log := slog.New(tc.new(&b))
			s, h := secret.New(plain), newHolder()
			log.Info("login", "password", s, "ptr", &s, "cfg", h, "cfgptr", &h, slog.Any("any", s), slog.Group("g", "pw", s))
			log.With("pw", s).WithGroup("sub").Info("again", "pw", s)
			if out := b.String(); strings.Contains(out, plain) || !strings.Contains(out, secret.Redacted) {
				t.Errorf("%s handler wrote %q: want REDACTED, never the secret", tc.name, out)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	h := newHolder()
	for name, v := range map[string]any{"value": secret.New(plain), "struct": h, "pointer": &h, "map key value": map[string]secret.String{"pw": secret.New(plain)}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%s): %v", name, err)
		}
		if strings.Contains(string(b), plain) || !strings.Contains(string(b), secret.Redacted) {
			t.Errorf("Marshal(%s) = %s: want REDACTED, never the secret", name, b)
		}
	}
	if b, _ := json.Marshal(secret.New(plain)); string(b) != `"REDACTED"` {
		t.Errorf(`Marshal(secret) = %s, want "REDACTED"`, b)
	}
}

func TestUnmarshal(t *testing.T) {
	t.Parallel()
	var h struct{ Password secret.String }
	if err := json.Unmarshal([]byte(`{"Password":"`+plain+`"}`), &h); err != nil {
		t.Fatal(err)
	}
	if h.Password.Reveal() != plain {
		t.Errorf("unmarshalled password = %d bytes, want %d", h.Password.Len(), len(plain))
	}
}

func TestReveal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		s     secret.String
		want  string
		empty bool
	}{
		{"zero", secret.String{}, "", true},
		{"empty", secret.New(""), "", true},
		{"set", secret.New(plain), plain, false},
	} {
		if got := tc.s.Reveal(); got != tc.want {
			t.Errorf("%s: Reveal() = %q, want %q", tc.name, got, tc.want)
		}
		if got := tc.s.Empty(); got != tc.empty {
			t.Errorf("%s: Empty() = %v, want %v", tc.name, got, tc.empty)
		}
		if got := tc.s.Len(); got != len(tc.want) {
			t.Errorf("%s: Len() = %d, want %d", tc.name, got, len(tc.want))
		}
	}
}

func ExampleString() {
	pw := secret.New("hunter2")
	fmt.Println(pw)
	fmt.Printf("%#v %q\n", pw, pw)
	b, _ := json.Marshal(struct{ Password secret.String }{pw})
	fmt.Println(string(b))
	fmt.Println(len(pw.Reveal()))
	// Output:
	// REDACTED
	// REDACTED REDACTED
	// {"Password":"REDACTED"}
	// 7
}
