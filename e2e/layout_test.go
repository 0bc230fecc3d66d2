package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLayoutListsEveryPackage: the README's Layout has a line for every
// package of the module (every directory with Go files but tests), and
// none for a package that is gone.
func TestLayoutListsEveryPackage(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Layout\n.*?```\n(.*?)```\n").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no Layout block")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(m[1]), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			listed[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	packages := map[string]bool{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin" || d.Name() == "var" || d.Name() == "data") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dir, _ := filepath.Rel("..", filepath.Dir(path))
			packages[filepath.ToSlash(dir)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	packages["e2e"] = true // tests only
	for p := range packages {
		if !listed[p] {
			t.Errorf("README.md's Layout has no line for package %s", p)
		}
	}
	for p := range listed {
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("README.md's Layout lists %s, which does not exist", p)
		}
	}
}
