package vddk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/nbd"
)

// The tests run Debian's nbdkit. It has no vddk plugin, so they stand
// nbdkit's file plugin (and curl, for the password) in for vddk through
// Config.Plugin: the supervision, the socket, the password pipe and the
// reading path are the ones vddk uses; only the plugin differs.

func needNbdkit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nbdkit"); err != nil {
		t.Fatalf("nbdkit is not installed (make deps installs it): %v", err)
	}
}

// sparseDisk writes a sparse file of size bytes with random data at each
// of offsets (length n each) and returns its path and contents.
func sparseDisk(t *testing.T, size int64, n int, offsets ...int64) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	want := make([]byte, size)
	pieces := make(map[int64][]byte, len(offsets))
	for _, off := range offsets {
		rand.Read(want[off : off+int64(n)])
		pieces[off] = want[off : off+int64(n)]
	}
	testkit.SparseFile(t, path, size, pieces)
	return path, want
}

// settledGoroutines returns the number of goroutines once it is at most
// limit, or after a minute (less when the test's deadline is nearer).
func settledGoroutines(t testing.TB, limit int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(min(testkit.Wait(t), time.Minute)); n > limit && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// processGone reports whether pid no longer exists (it has been reaped).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestOpenWithoutVddkPlugin(t *testing.T) {
	needNbdkit(t)
	if exec.Command("nbdkit", "vddk", "--dump-plugin").Run() == nil {
		t.Skip("this nbdkit has a vddk plugin")
	}
	ctx := t.Context()
	if Installed(ctx, Config{}) {
		t.Error("Installed = true without a vddk plugin")
	}
	tmp := os.TempDir()
	before, _ := filepath.Glob(filepath.Join(tmp, "godwit-vddk-*"))
	d, err := Open(ctx, fullConfig())
	if err == nil {
		d.Close()
		t.Fatal("Open succeeded without a vddk plugin")
	}
	if !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Open = %v, want ErrNotInstalled", err)
	}
	for _, want := range []string{"vddk plugin", "nbdkit-vddk-plugin", "VDDK", "-vddk-libdir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "pa55") {
		t.Errorf("Open error has the password: %v", err)
	}
	after, _ := filepath.Glob(filepath.Join(tmp, "godwit-vddk-*"))
	if len(after) > len(before) {
		t.Errorf("Open left a socket dir: %v", after)
	}
}

func TestCheck(t *testing.T) {
	needNbdkit(t)
	ctx := t.Context()
	if err := Check(ctx, Config{Plugin: []string{"file"}}); err != nil {
		t.Errorf("Check(file plugin) = %v", err)
	}
	if !Installed(ctx, Config{Plugin: []string{"file"}}) {
		t.Error("Installed(file plugin) = false")
	}
	err := Check(ctx, Config{Nbdkit: filepath.Join(t.TempDir(), "nbdkit")})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "nbdkit") {
		t.Errorf("Check(no nbdkit) = %v, want ErrNotInstalled naming nbdkit", err)
	}
}

func TestReadThroughStandIn(t *testing.T) {
	needNbdkit(t)
	const size = 8 << 20
	path, want := sparseDisk(t, size, 64<<10, 0, 3<<20+4096, size-64<<10)
	d, err := Open(t.Context(), Config{Plugin: []string{"file", "file=" + path}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	if d.Size() != size {
		t.Fatalf("Size = %d, want %d", d.Size(), size)
	}
	got := make([]byte, size)
	for off := int64(0); off < size; off += 1 << 20 {
		if err := d.ReadAt(t.Context(), got[off:off+1<<20], off); err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("ReadAt: the bytes read differ from the file")
	}
	// An odd range across a data area's edge.
	p := make([]byte, 10000)
	if err := d.ReadAt(t.Context(), p, 3<<20); err != nil {
		t.Fatalf("ReadAt(3 MiB): %v", err)
	}
	if !bytes.Equal(p, want[3<<20:3<<20+10000]) {
		t.Error("ReadAt(3 MiB, 10000 bytes) differs from the file")
	}

	exts, err := d.Extents(t.Context(), 0, size)
	if err != nil {
		t.Fatalf("Extents: %v", err)
	}
	next, zero := int64(0), int64(0)
	for _, x := range exts {
		if x.Offset != next {
			t.Fatalf("Extents: %+v does not start at %d", x, next)
		}
		next = x.End()
		if x.Zero {
			zero += x.Length
			if !bytes.Equal(want[x.Offset:x.End()], make([]byte, x.Length)) {
				t.Errorf("Extents: %+v is said zero but holds data", x)
			}
		}
	}
	if next != size {
		t.Errorf("Extents end at %d, want %d", next, size)
	}
	if zero < 4<<20 {
		t.Errorf("Extents: %d zero bytes, want the holes (at least 4 MiB) reported: %+v", zero, exts)
	}
}

func TestPasswordThroughPipe(t *testing.T) {
	needNbdkit(t)
	// nbdkit's curl plugin stands in for vddk: it reads password=-FD with
	// the same nbdkit_read_password as vddk, and uses it for HTTP basic
	// auth against this server, which serves the disk only to the right
	// password.
	const password = "s3cret pass=word;$x"
	disk := make([]byte, 1<<20)
	rand.Read(disk)
	var authed, refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "alice" || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="disk"`)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		http.ServeContent(w, r, "disk.img", time.Time{}, bytes.NewReader(disk))
	}))
	defer srv.Close()
	if err := Check(t.Context(), Config{Plugin: []string{"curl"}}); err != nil {
		t.Fatalf("no curl plugin (Debian's nbdkit package has it): %v", err)
	}
	cfg := Config{Plugin: []string{"curl", "url=" + srv.URL + "/disk.img", "user=alice", "protocols=http"}}

	cfg.Password = secret.New(password)
	d, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	pid := d.cmd.Process.Pid
	got := make([]byte, len(disk))
	if err := d.ReadAt(t.Context(), got, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if !bytes.Equal(got, disk) {
		t.Error("ReadAt through curl differs from the served disk")
	}
	if authed.Load() == 0 {
		t.Error("the server saw no request with the password")
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte("s3cret")) || !bytes.Contains(cmdline, []byte("password=-3")) {
		t.Errorf("nbdkit's command line %q: want password=-3 and no password", cmdline)
	}
	// nbdkit closed the pipe once it had read the password.
	// nbdkit closed the pipe once it had read the password, and so did we:
	// no descriptor of nbdkit or of this process refers to it.
	if d.pipeIno == 0 {
		t.Fatal("no password pipe inode recorded")
	}
	pipe := "pipe:[" + strconv.FormatUint(d.pipeIno, 10) + "]"
	for _, proc := range []string{strconv.Itoa(pid), "self"} {
		fds, err := os.ReadDir("/proc/" + proc + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/" + proc + "/fd/" + fd.Name()); l == pipe {
				t.Errorf("/proc/%s/fd/%s is still the password pipe %s", proc, fd.Name(), pipe)
			}
		}
	}
	d.Close()

	cfg.Password = secret.New("wrong s3cret")
	d, err = Open(t.Context(), cfg)
	if err == nil {
		d.Close()
		t.Fatal("Open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open error has the password: %v", err)
	}
	if !strings.Contains(err.Error(), "nbdkit stderr") || refused.Load() == 0 {
		t.Errorf("Open with a wrong password = %v (%d refused): want nbdkit's stderr", err, refused.Load())
	}
	t.Logf("wrong password: %v", err)
}

func TestCloseLeavesNothing(t *testing.T) {
	needNbdkit(t)
	path, _ := sparseDisk(t, 1<<20, 4096, 0)
	before := runtime.NumGoroutine()
	d, err := Open(t.Context(), Config{Plugin: []string{"file", "file=" + path}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	pid, dir := d.cmd.Process.Pid, d.dir
	if err := d.ReadAt(t.Context(), make([]byte, 4096), 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !processGone(pid) {
		t.Errorf("nbdkit (pid %d) still exists after Close", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket dir %s still exists after Close: %v", dir, err)
	}
	if n := settledGoroutines(t, before); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
	if err := d.ReadAt(t.Context(), make([]byte, 4096), 0); !errors.Is(err, nbd.ErrClosed) || errors.Is(err, ErrExited) {
		t.Errorf("ReadAt after Close = %v, want nbd.ErrClosed and not ErrExited", err)
	}
}

func TestFailedOpenLeavesNothing(t *testing.T) {
	needNbdkit(t)
	before := runtime.NumGoroutine()
	tmp := os.TempDir()
	dirs, _ := filepath.Glob(filepath.Join(tmp, "godwit-vddk-*"))
	// The file plugin refuses to start on a file that does not exist.
	_, err := Open(t.Context(), Config{Plugin: []string{"file", "file=" + filepath.Join(t.TempDir(), "missing.img")}})
	if err == nil || !strings.Contains(err.Error(), "missing.img") {
		t.Fatalf("Open(missing file) = %v, want an error with nbdkit's stderr naming the file", err)
	}
	if !errors.Is(err, ErrExited) {
		t.Errorf("Open(missing file) = %v, want ErrExited", err)
	}
	after, _ := filepath.Glob(filepath.Join(tmp, "godwit-vddk-*"))
	if len(after) > len(dirs) {
		t.Errorf("failed Open left a socket dir: %v", after)
	}
	if n := settledGoroutines(t, before); n > before {
		t.Errorf("%d goroutines after a failed Open, %d before", n, before)
	}

	// A context that ends before nbdkit serves.
	path, _ := sparseDisk(t, 1<<20, 4096, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(ctx, Config{Plugin: []string{"file", "file=" + path}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(cancelled) = %v, want context.Canceled", err)
	}
	if n := settledGoroutines(t, before); n > before {
		t.Errorf("%d goroutines after a cancelled Open, %d before", n, before)
	}
}

func TestNbdkitKilledMidRead(t *testing.T) {
	needNbdkit(t)
	path, _ := sparseDisk(t, 1<<20, 1<<20, 0)
	// The delay filter holds every read for 30 s, so the read below is in
	// flight when nbdkit is killed.
	d, err := Open(t.Context(), Config{Plugin: []string{"file", "file=" + path, "--filter=delay", "rdelay=30"}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	pid := d.cmd.Process.Pid
	errc := make(chan error, 1)
	go func() { errc <- d.ReadAt(t.Context(), make([]byte, 4096), 0) }()
	for d.ep.Load().PeakInFlight() == 0 { // the read is sent
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "killed") {
			t.Errorf("ReadAt after nbdkit was killed = %v, want ErrExited with the signal", err)
		}
		t.Logf("read error: %v", err)
	case <-time.After(testkit.Wait(t)):
		t.Fatal("ReadAt still waits after nbdkit was killed")
	}
	if err := d.ReadAt(t.Context(), make([]byte, 4096), 0); !errors.Is(err, ErrExited) {
		t.Errorf("a later ReadAt = %v, want ErrExited", err)
	}
	if _, err := d.Extents(t.Context(), 0, 4096); !errors.Is(err, ErrExited) {
		t.Errorf("a later Extents = %v, want ErrExited", err)
	}
}

func TestNbdkitDiesWithStderr(t *testing.T) {
	needNbdkit(t)
	if err := Check(t.Context(), Config{Plugin: []string{"eval"}}); err != nil {
		t.Fatalf("no eval plugin (Debian's nbdkit package has it): %v", err)
	}
	// The eval plugin stands in for a vddk that logs an error and then
	// dies: the first read fails with EIO and a message on nbdkit's
	// stderr, the second kills nbdkit.
	pread := `if [ -e "$tmpdir/once" ]; then kill -9 $PPID; fi; touch "$tmpdir/once"; ` +
		`echo "EIO VixDiskLib: lost the host" >&2; exit 1`
	d, err := Open(t.Context(), Config{Plugin: []string{"eval", "get_size=echo 1048576", "pread=" + pread}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	// nbdkit killed by a signal leaves the eval plugin's script dir behind.
	t.Cleanup(func() {
		if m := regexp.MustCompile(`(/\S+/nbdkit\w+)/pread`).FindStringSubmatch(d.stderr.String()); m != nil {
			os.RemoveAll(m[1])
		}
	})
	err = d.ReadAt(t.Context(), make([]byte, 512), 0)
	if !errors.Is(err, nbd.EIO) || errors.Is(err, ErrExited) {
		t.Fatalf("first ReadAt = %v, want EIO from a live nbdkit", err)
	}
	err = d.ReadAt(t.Context(), make([]byte, 512), 0)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "lost the host") {
		t.Fatalf("second ReadAt = %v, want ErrExited with nbdkit's stderr", err)
	}
	t.Logf("read error: %v", err)
}
