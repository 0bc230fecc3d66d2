package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/nbd/nbdtest"
)

// TestCopyCommand runs `vma copy` between nbdkit exports and files:
// byte-exact, a file target sparse, progress as JSON lines off a terminal.
func TestCopyCommand(t *testing.T) {
	const size = 16 << 20
	dir := t.TempDir()
	want := make([]byte, size)
	_, _ = rand.Read(want[:size/4])
	_, _ = rand.Read(want[size/2 : size/2+size/8])
	srcFile := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(srcFile, want, 0o600); err != nil {
		t.Fatal(err)
	}
	src := nbdtest.Start(t, "-r", "file", srcFile)
	mem := nbdtest.Start(t, "memory", "16M")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out, errOut bytes.Buffer
	// NBD to NBD, flags after the arguments as nbdcopy takes them.
	if err := dispatch(ctx, []string{"copy", src.URI, mem.URI, "-requests", "4", "-request-size", "64K", "-progress"}, &out, &errOut); err != nil {
		t.Fatalf("copy to memory: %v\n%s", err, errOut.String())
	}
	var last map[string]any
	sc := bufio.NewScanner(&errOut)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "{") {
			last = nil
			if err := json.Unmarshal([]byte(line), &last); err != nil {
				t.Fatalf("progress line %q: %v", line, err)
			}
		}
	}
	if last == nil || last["done"] != float64(size) || last["total"] != float64(size) || last["checkpoint"] != float64(size) {
		t.Errorf("last progress line = %v, want all %d bytes done", last, size)
	}
	// NBD to a new file: sparse, byte-exact.
	dstFile := filepath.Join(dir, "dst.raw")
	if err := dispatch(ctx, []string{"copy", mem.URI, dstFile}, &out, &errOut); err != nil {
		t.Fatalf("copy to a file: %v", err)
	}
	got, err := os.ReadFile(dstFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file copy differs from the source (%v)", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dstFile, &st); err != nil || st.Blocks*512 > size/2 {
		t.Errorf("the file target allocates %d bytes of %d: its holes were written (%v)", st.Blocks*512, size, err)
	}
}

// TestCopyCommandFails: a failing target makes vma copy fail naming the
// NBD error and the offset, and bad arguments are refused before any copy.
func TestCopyCommandFails(t *testing.T) {
	dir := t.TempDir()
	srcFile := filepath.Join(dir, "src.raw")
	data := bytes.Repeat([]byte{7}, 1<<20)
	if err := os.WriteFile(srcFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := nbdtest.Start(t, "--filter=error", "memory", "1M", "error=ENOSPC", "error-pwrite-rate=100%")
	small := nbdtest.Start(t, "memory", "4K")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{srcFile, bad.URI}, "ENOSPC"},
		{[]string{srcFile, small.URI}, "less than the source's"},
		{[]string{srcFile}, "want SRC and DST"},
		{[]string{srcFile, bad.URI, "-request-size", "1G"}, "-request-size"},
		{[]string{srcFile, bad.URI, "-rate", "fast"}, "-rate"},
		{[]string{srcFile, bad.URI, "-flush=false"}, "-flush=false"},
		{[]string{filepath.Join(dir, "missing.raw"), bad.URI}, "missing.raw"},
	} {
		var out, errOut bytes.Buffer
		err := dispatch(ctx, append([]string{"copy"}, tt.args...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("vma copy %v = %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

// TestCopyCommandVerify: -verify reads the target back, prints the
// source's sha256, and fails naming the first block that differs: here a
// target that was not zero, copied with -target-is-zero.
func TestCopyCommandVerify(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	want := make([]byte, size)
	_, _ = rand.Read(want[:size/4])
	_, _ = rand.Read(want[size/2:])
	srcFile := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(srcFile, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mem := nbdtest.Start(t, "memory", "8M")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out, errOut bytes.Buffer
	if err := dispatch(ctx, []string{"copy", "-verify", "-progress", srcFile, mem.URI}, &out, &errOut); err != nil {
		t.Fatalf("copy -verify: %v\n%s", err, errOut.String())
	}
	sum := sha256.Sum256(want)
	if got, w := out.String(), fmt.Sprintf("verified sha256:%x\n", sum); got != w {
		t.Errorf("stdout = %q, want %q", got, w)
	}
	if !strings.Contains(errOut.String(), `"verified":8388608`) {
		t.Errorf("progress lines do not count the %d bytes verified:\n%s", size, errOut.String())
	}

	dirty := filepath.Join(dir, "dirty.raw")
	if err := os.WriteFile(dirty, bytes.Repeat([]byte{0xee}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := dispatch(ctx, []string{"copy", "-verify", "-target-is-zero", srcFile, dirty}, &out, &errOut)
	if w := "verify: bytes at offset 2097152 (+1048576) differ from the source"; err == nil || !strings.Contains(err.Error(), w) {
		t.Errorf("copy -verify -target-is-zero to a dirty target = %v, want %q", err, w)
	}
	if out.Len() != 0 {
		t.Errorf("stdout = %q after a failed verification, want nothing", out.String())
	}
}
