package flagconf_test

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/godwit/godwit/flagconf"
)

func TestPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(cfg, []byte(`{"api-addr": ":1", "nbd-ports": "1-2", "discover": 5}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GODWIT_API_ADDR", ":env")
	t.Setenv("GODWIT_NATS_ADDR", "env:4222")
	tests := []struct {
		name string
		args []string
		want map[string]string
	}{
		{"env only", nil, map[string]string{"api-addr": ":env", "nats-addr": "env:4222", "nbd-ports": "10-20", "discover": "60"}},
		{"file over env", []string{"-config", cfg}, map[string]string{"api-addr": ":1", "nats-addr": "env:4222", "nbd-ports": "1-2", "discover": "5"}},
		{"flag over file", []string{"-config", cfg, "-api-addr", ":flag"}, map[string]string{"api-addr": ":flag", "nbd-ports": "1-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.String("config", "", "")
			fs.String("api-addr", ":8082", "")
			fs.String("nats-addr", "127.0.0.1:4222", "")
			fs.String("nbd-ports", "10-20", "")
			fs.Int("discover", 60, "")
			if err := flagconf.Parse(fs, tt.args); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if got := fs.Lookup(k).Value.String(); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestLargeNumbers reads numbers from a config file as written, not as
// floats: 2147483648 would otherwise arrive as 2.147483648e+09.
func TestLargeNumbers(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.json")
	_ = os.WriteFile(cfg, []byte(`{"stream-max-bytes": 2147483648, "ratio": 0.5}`), 0o600)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", "")
	n := fs.Int64("stream-max-bytes", 1, "")
	r := fs.Float64("ratio", 1, "")
	if err := flagconf.Parse(fs, []string{"-config", cfg}); err != nil {
		t.Fatal(err)
	}
	if *n != 2147483648 || *r != 0.5 {
		t.Errorf("stream-max-bytes = %d, ratio = %v", *n, *r)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.json")
	_ = os.WriteFile(unknown, []byte(`{"colour": "red"}`), 0o600)
	badType := filepath.Join(dir, "b.json")
	_ = os.WriteFile(badType, []byte(`{"n": "many"}`), 0o600)
	notJSON := filepath.Join(dir, "n.json")
	_ = os.WriteFile(notJSON, []byte(`n = 1`), 0o600)
	for _, args := range [][]string{{"-config", unknown}, {"-config", badType}, {"-config", notJSON}, {"-config", filepath.Join(dir, "none")}, {"-n", "x"}, {"stray"}, {"-n", "2", "stray"}} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("config", "", "")
		fs.Int("n", 1, "")
		if err := flagconf.Parse(fs, args); err == nil {
			t.Errorf("Parse(%v) succeeded", args)
		}
	}
	t.Setenv("GODWIT_N", "many")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("n", 1, "")
	if err := flagconf.Parse(fs, nil); err == nil {
		t.Error("a bad environment value was accepted")
	}
}
