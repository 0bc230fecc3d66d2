// Package nbdtest starts nbdkit for tests of NBD clients: each server is a child process that exits
// with the test (and with the test binary, through --exit-with-parent).
package nbdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is an nbdkit started by Start or StartTCP.
type Server struct {
	// URI reaches the default export: nbd+unix:///?socket=PATH or nbd://127.0.0.1:PORT/.
	URI string
	// Addr is the socket path or host:port.
	Addr string

	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
}

// Start runs nbdkit on a unix socket with args (the plugin, its parameters and any --filter),
// waits until it accepts connections and stops it when the test ends. It fails the test if nbdkit
// is not installed or does not start within 10 s.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "nbdtest") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatalf("nbdtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nbd.sock")
	s := start(t, "unix", sock, append([]string{"--unix", sock}, args...))
	s.URI = "nbd+unix:///?socket=" + sock
	return s
}

// StartTCP is Start on a free loopback TCP port.
func StartTCP(t testing.TB, args ...string) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("nbdtest: find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := start(t, "tcp", addr, append([]string{"--ipaddr", "127.0.0.1", "--port", strconv.Itoa(port)}, args...))
	s.URI = "nbd://" + addr + "/"
	return s
}

func start(t testing.TB, network, addr string, args []string) *Server {
	t.Helper()
	bin, err := exec.LookPath("nbdkit")
	if err != nil {
		t.Fatalf("nbdtest: nbdkit is not installed (make deps installs it): %v", err)
	}
	s := &Server{Addr: addr, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"--foreground", "--exit-with-parent"}, args...)...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("nbdtest: start nbdkit: %v", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("nbdkit %v stderr:\n%s", args, s.stderr.String())
		}
	})
	// A minute, or less when the test's own deadline is nearer: nbdkit
	// starts slowly on a loaded machine.
	deadline := time.Now().Add(time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok && end.Add(-time.Until(end)/20).Before(deadline) {
			deadline = end.Add(-time.Until(end) / 20)
		}
	}
	for {
		conn, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			conn.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("nbdtest: nbdkit %v exited: %s", args, s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbdtest: nbdkit %v not listening on %s: %v", args, addr, err)
		}
	}
}

// Kill stops nbdkit with SIGKILL, as a crash would, and waits until it has exited.
func (s *Server) Kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Stderr returns what nbdkit wrote to its standard error so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// ExportURI returns the URI of the named export on s.
func (s *Server) ExportURI(name string) string {
	if filepath.IsAbs(s.Addr) {
		return fmt.Sprintf("nbd+unix:///%s?socket=%s", name, s.Addr)
	}
	return fmt.Sprintf("nbd://%s/%s", s.Addr, name)
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
