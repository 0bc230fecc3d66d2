package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// TestCompareCommand runs `vma compare` on sparse files and an nbdkit
// export: same, a difference at its exact offset, sizes that differ.
func TestCompareCommand(t *testing.T) {
	const size = 100 << 30 // sparse: a few KiB of data
	dir := t.TempDir()
	image := func(name string, size int64, at int64, data string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		testkit.SparseFile(t, path, size, map[int64][]byte{0: []byte("boot"), at: []byte(data)})
		return path
	}
	a := image("a.raw", size, 70<<30, "godwit")
	b := image("b.raw", size, 70<<30, "godwit")
	c := image("c.raw", size, 70<<30, "godWit")
	small := image("small.raw", 1<<20, 4096, "godwit")
	mem := nbdtest.Start(t, "memory", "1M")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out, errOut bytes.Buffer
	if err := dispatch(ctx, []string{"compare", a, b}, &out, &errOut); err != nil {
		t.Fatalf("compare same: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`^same: 107374182400 bytes \([1-9][0-9]{3,6} bytes of data compared\)\n$`).MatchString(out.String()) {
		t.Errorf("compare same: stdout %q", out.String())
	}

	out.Reset()
	err := dispatch(ctx, []string{"compare", a, c}, &out, &errOut)
	if w := "differ at offset 75161927683"; err == nil || !strings.Contains(err.Error(), w) || out.String() != w+"\n" {
		t.Errorf("compare differing: %v, stdout %q; want %q", err, out.String(), w)
	}

	out.Reset()
	err = dispatch(ctx, []string{"compare", small, mem.URI}, &out, &errOut)
	if w := "differ at offset 0"; err == nil || out.String() != w+"\n" {
		t.Errorf("compare with an empty export: %v, stdout %q; want %q", err, out.String(), w)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{a, small}, "sizes differ: " + a + " holds 107374182400 bytes, " + small + " 1048576"},
		{[]string{a}, "want A and B"},
		{[]string{a, filepath.Join(dir, "missing.raw")}, "missing.raw"},
	} {
		out.Reset()
		err := dispatch(ctx, append([]string{"compare"}, tt.args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) || out.Len() != 0 {
			t.Errorf("vma compare %v = %v, stdout %q; want an error with %q", tt.args, err, out.String(), tt.want)
		}
	}
}
