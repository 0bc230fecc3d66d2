package exports_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/testkit"
)

func TestPickSkipsLeasedAndBusyPorts(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 3)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last})
	busy, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+1))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p, err := m.Pick(map[int]bool{first: true})
	if err != nil || p != first+2 {
		t.Errorf("Pick = %d, %v, want %d", p, err, first+2)
	}
	if _, err := m.Pick(map[int]bool{first: true, first + 2: true}); !errors.Is(err, exports.ErrExhausted) {
		t.Errorf("Pick on a full pool = %v, want ErrExhausted", err)
	}
}

// TestPickIn: a VMA's jobs take ports of its share only, cut to the pool.
func TestPickIn(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 6)
	m := exports.New(exports.Config{FirstPort: first + 1, LastPort: last}) // the pool: first+1 to first+5
	tests := []struct {
		name     string
		from, to int
		leased   map[int]bool
		want     int // 0: ErrExhausted
	}{
		{"share", first + 3, first + 4, nil, first + 3},
		{"leased skipped", first + 3, first + 4, map[int]bool{first + 3: true}, first + 4},
		{"share full", first + 3, first + 4, map[int]bool{first + 3: true, first + 4: true}, 0},
		{"cut to the pool", first - 5, first + 1, nil, first + 1},
		{"outside the pool", last + 1, last + 9, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := m.PickIn(tt.from, tt.to, tt.leased)
			if tt.want == 0 && !errors.Is(err, exports.ErrExhausted) || tt.want != 0 && (err != nil || p != tt.want) {
				t.Errorf("PickIn(%d, %d, %v) = %d, %v, want %d", tt.from, tt.to, tt.leased, p, err, tt.want)
			}
		})
	}
}

func TestPrepareMakesSparseVolumesOfExactSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vol := filepath.Join(dir, "volumes", "vm-1", "disk-2000.raw")
	const size = 64<<20 + 512
	if err := exports.Prepare(filepath.Join(dir, "exports", "job-1"), []exports.Volume{{Name: "job-1-disk-2000", Path: vol, Capacity: size, Fresh: true}}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(vol, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks != 0 {
		t.Errorf("volume size %d blocks %d, want %d bytes and sparse", st.Size, st.Blocks, size)
	}
	// Data survives an incremental prepare, and a fresh one drops it.
	if err := os.WriteFile(vol, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := exports.Prepare(filepath.Join(dir, "exports", "job-2"), []exports.Volume{{Name: "d", Path: vol, Capacity: size}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vol); !bytes.HasPrefix(b, []byte("data")) || len(b) != size {
		t.Errorf("incremental prepare lost data or size: %d bytes", len(b))
	}
	if err := exports.Prepare(filepath.Join(dir, "exports", "job-3"), []exports.Volume{{Name: "d", Path: vol, Capacity: size, Fresh: true}}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(vol)
	head := make([]byte, 4)
	_, _ = f.Read(head)
	f.Close()
	if !bytes.Equal(head, make([]byte, 4)) {
		t.Errorf("fresh prepare kept old data %q", head)
	}
}

// TestServeWritesLandInTheVolume writes through a real nbdkit with nbdcopy
// and reads the volume file back; then kills nbdkit and sees it restarted.
func TestServeWritesLandInTheVolume(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 2)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last})
	t.Cleanup(m.StopAll)
	dir := t.TempDir()
	const size = 8 << 20
	vols := []exports.Volume{
		{Name: "job-1-disk-2000", Path: filepath.Join(dir, "v", "a.raw"), Capacity: size, Fresh: true},
		{Name: "job-1-disk-2001", Path: filepath.Join(dir, "v", "b.raw"), Capacity: 2 * size, Fresh: true},
	}
	exportDir := filepath.Join(dir, "exports", "job-1")
	if err := exports.Prepare(exportDir, vols); err != nil {
		t.Fatal(err)
	}
	port, err := m.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Serve(ctx, "job-1", port, exportDir); err != nil {
		t.Fatal(err)
	}
	// Nobody lists the exports; only the right names reach them.
	for _, url := range []string{fmt.Sprintf("nbd://127.0.0.1:%d", port), fmt.Sprintf("nbd://127.0.0.1:%d/", port)} {
		if out, err := exec.Command("nbdinfo", "--list", url).CombinedOutput(); err == nil || strings.Contains(string(out), "job-1") {
			t.Errorf("nbdinfo --list %s = %v, listed:\n%s", url, err, out)
		}
	}
	for i, v := range vols {
		url := fmt.Sprintf("nbd://127.0.0.1:%d/%s", port, v.Name)
		out, err := exec.Command("nbdinfo", "--size", url).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa((i+1)*size) {
			t.Errorf("nbdinfo --size %s = %s, %v, want %d", url, out, err, (i+1)*size)
		}
	}
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, size)
	_, _ = rand.Read(data[:size/2]) // the second half stays zero
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	copyTo := func() {
		t.Helper()
		out, err := exec.Command("nbdcopy", src, fmt.Sprintf("nbd://127.0.0.1:%d/job-1-disk-2000", port)).CombinedOutput()
		if err != nil {
			t.Fatalf("nbdcopy: %v\n%s", err, out)
		}
		got, err := os.ReadFile(vols[0].Path)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("volume differs from what was written (%v)", err)
		}
	}
	copyTo()

	// nbdkit dies: the supervisor brings it back on the same port. The new
	// process exists a moment before it listens: wait for both.
	pid := nbdkitPid(t, port)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testkit.Wait(t))
	for {
		if p := nbdkitPidOrZero(port); p != 0 && p != pid {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nbdkit was not restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := m.Restarts(); n != 1 {
		t.Errorf("Restarts() = %d after one death, want 1", n)
	}
	data[0] ^= 0xff
	_ = os.WriteFile(src, data, 0o600)
	copyTo()

	m.Stop("job-1")
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		t.Error("port still served after Stop")
	}
	if p, err := m.Pick(nil); err != nil || p != port {
		t.Errorf("Pick after Stop = %d, %v, want the freed port %d", p, err, port)
	}
}

func TestServeReportsAFailingNbdkit(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 1)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Serve(ctx, "job-x", first, filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "export dir") {
		t.Errorf("Serve on a missing dir = %v, want the dir's error", err)
	}
}

// TestServeIsReadyOnlyWhenItsExportAnswers occupies the port nbdkit is told
// to use with a listener that accepts and says nothing: nbdkit cannot bind
// and exits. A readiness check that only connects (the old one) took the
// listener for nbdkit and reported success; the NBD handshake does not.
func TestServeIsReadyOnlyWhenItsExportAnswers(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 1)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last, ReadyTimeout: 5 * time.Second})
	t.Cleanup(m.StopAll)
	silent := silentListener(t, "127.0.0.1:"+strconv.Itoa(first))
	dir := t.TempDir()
	exportDir := filepath.Join(dir, "exports", "job-1")
	if err := exports.Prepare(exportDir, []exports.Volume{{Name: "job-1-disk-2000", Path: filepath.Join(dir, "a.raw"), Capacity: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Serve(ctx, "job-1", first, exportDir)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Serve on a port a silent listener holds = %v, want nbdkit's exit", err)
	}
	if c, err := net.Dial("tcp", silent); err != nil {
		t.Errorf("the silent listener was not reached at all: %v", err)
	} else {
		c.Close()
	}
}

// silentListener accepts connections on addr and never writes a byte.
func silentListener(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l.Addr().String()
}

func TestProbe(t *testing.T) {
	t.Parallel()
	first, last := testkit.FreePorts(t, 1)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last})
	t.Cleanup(m.StopAll)
	dir := t.TempDir()
	name, err := exports.Name("job-1-disk-2000")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^job-1-disk-2000-[0-9a-f]{32}$`).MatchString(name) {
		t.Errorf("Name = %q, want the prefix and 32 hex digits", name)
	}
	if other, _ := exports.Name("job-1-disk-2000"); other == name {
		t.Errorf("Name twice = %q both times", name)
	}
	exportDir := filepath.Join(dir, "exports", "job-1")
	if err := exports.Prepare(exportDir, []exports.Volume{{Name: name, Path: filepath.Join(dir, "a.raw"), Capacity: 3 << 20}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Serve(ctx, "job-1", first, exportDir); err != nil {
		t.Fatal(err)
	}
	nbd := "127.0.0.1:" + strconv.Itoa(first)
	garbage, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { garbage.Close() })
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	tests := []struct {
		name     string
		addr     string
		export   string
		wantSize int64
		wantErr  string
	}{
		{"its export", nbd, name, 3 << 20, ""},
		{"a wrong name", nbd, "job-1-disk-2000", 0, "no such export"},
		{"the default export", nbd, "", 0, "no such export"},
		{"a path", nbd, "../a.raw", 0, "no such export"},
		{"a silent listener", silentListener(t, "127.0.0.1:0"), name, 0, "greeting"},
		{"not NBD", garbage.Addr().String(), name, 0, "not a newstyle NBD server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			size, err := exports.Probe(ctx, tc.addr, tc.export)
			if tc.wantErr == "" && (err != nil || size != tc.wantSize) {
				t.Errorf("Probe(%q) = %d, %v, want %d", tc.export, size, err, tc.wantSize)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Probe(%q) = %d, %v, want an error with %q", tc.export, size, err, tc.wantErr)
			}
		})
	}
	// nbdinfo agrees: no listing, no wrong name, the right name works.
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--list", "nbd://" + nbd}, false},
		{[]string{"nbd://" + nbd + "/wrong-name"}, false},
		{[]string{"nbd://" + nbd + "/"}, false},
		{[]string{"--size", "nbd://" + nbd + "/" + name}, true},
	} {
		out, err := exec.Command("nbdinfo", c.args...).CombinedOutput()
		if (err == nil) != c.ok || strings.Contains(string(out), name) && !c.ok {
			t.Errorf("nbdinfo %v = %v, want success %v:\n%s", c.args, err, c.ok, out)
		}
	}
}

// nbdkitPid finds the nbdkit listening on port through /proc.
func nbdkitPid(t *testing.T, port int) int {
	t.Helper()
	if p := nbdkitPidOrZero(port); p != 0 {
		return p
	}
	t.Fatalf("no nbdkit on port %d", port)
	return 0
}

func nbdkitPidOrZero(port int) int {
	for _, p := range testkit.List() {
		if len(p.Args) == 0 || filepath.Base(p.Args[0]) != "nbdkit" {
			continue
		}
		if i := slices.Index(p.Args, "--port"); i >= 0 && i+1 < len(p.Args) && p.Args[i+1] == strconv.Itoa(port) {
			return p.PID
		}
	}
	return 0
}
