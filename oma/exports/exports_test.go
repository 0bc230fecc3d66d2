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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/exports/exportstest"
)

func TestPickSkipsLeasedAndBusyPorts(t *testing.T) {
	t.Parallel()
	first, last := exportstest.FreePorts(t, 3)
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
	first, last := exportstest.FreePorts(t, 2)
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
	out, err := exec.Command("nbdinfo", "--list", fmt.Sprintf("nbd://127.0.0.1:%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --list: %v\n%s", err, out)
	}
	for _, name := range []string{"job-1-disk-2000", "job-1-disk-2001"} {
		if !strings.Contains(string(out), name) {
			t.Errorf("nbdinfo --list lacks %s:\n%s", name, out)
		}
	}
	if !strings.Contains(string(out), strconv.Itoa(2*size)) {
		t.Errorf("nbdinfo --list does not show the exact size %d:\n%s", 2*size, out)
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

	// nbdkit dies: the supervisor brings it back on the same port.
	pid := nbdkitPid(t, port)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := nbdkitPidOrZero(port); p != 0 && p != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nbdkit was not restarted")
		}
		time.Sleep(20 * time.Millisecond)
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
	first, last := exportstest.FreePorts(t, 1)
	m := exports.New(exports.Config{FirstPort: first, LastPort: last})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Serve(ctx, "job-x", first, filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Serve on a missing dir = %v, want nbdkit's exit", err)
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
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "nbdkit" && strings.Contains(string(cmdline), "\x00--port\x00"+strconv.Itoa(port)+"\x00") {
			return pid
		}
	}
	return 0
}
