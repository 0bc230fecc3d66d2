package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoTestLines runs scripts/go-test.sh, which make check and make test
// use, on a module of its own: a package's line comes the moment it ends
// (the fast package before the slow one, which plain go test holds back),
// a failing package brings its failed test's output, and the exit status
// is go test's.
func TestGoTestLines(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatalf("jq is missing (make test installs what the tests need): %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":         "module example.test\n\ngo 1.26\n",
		"a/slow_test.go": "package a\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestSlow(t *testing.T) { time.Sleep(3 * time.Second) }\n",
		"b/fast_test.go": "package b\n\nimport \"testing\"\n\nfunc TestFast(t *testing.T) { t.Log(\"quiet when it passes\") }\n",
		"c/fail_test.go": "package c\n\nimport \"testing\"\n\nfunc TestGood(t *testing.T) { t.Log(\"not shown\") }\n\n" +
			"func TestBroken(t *testing.T) { t.Log(\"the detail\"); t.Error(\"it broke\") }\n",
	}
	for name, body := range files {
		path := filepath.Join(mod, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(root, "scripts", "go-test.sh"), "-count=1", "./...")
	cmd.Dir = mod
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("go-test.sh with a failing package = %v, want exit status 1\n%s", err, out)
	}
	got := string(out)
	fast, slow := strings.Index(got, "ok  \texample.test/b\t"), strings.Index(got, "ok  \texample.test/a\t")
	if fast < 0 || slow < 0 || fast > slow {
		t.Errorf("want the fast package's ok line, then the slow one's:\n%s", got)
	}
	for _, want := range []string{"the detail", "it broke", "--- FAIL: TestBroken", "FAIL\texample.test/c\t"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"not shown", "quiet when it passes", "=== RUN   TestGood"} {
		if strings.Contains(got, not) {
			t.Errorf("output has %q, from a test that passed:\n%s", not, got)
		}
	}
}
