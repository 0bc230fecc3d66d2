// Package tunneltest runs a real OpenSSH sshd for tests of the tunnel.
package tunneltest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/testkit"
)

// SSHDPath is where Debian installs the OpenSSH server.
const SSHDPath = "/usr/sbin/sshd"

// SSHD is a running sshd on 127.0.0.1.
type SSHD struct {
	Addr           string        // 127.0.0.1:port
	User           string        // the account keys log in as: the current user
	HostKey        ssh.PublicKey // the server's host key
	KnownHosts     string        // a known_hosts file holding HostKey for Addr
	AuthorizedKeys string        // the authorized_keys file: write it with Authorize

	t      testing.TB
	config string
	log    *testkit.Buffer
	mu     sync.Mutex
	cmd    *exec.Cmd
}

// StartSSHD starts /usr/sbin/sshd -D -e on a free port with its own host key, an empty
// authorized_keys file and the production settings (ProductionSettings), and stops it at
// cleanup. It fails the test if sshd is not installed.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Fatalf("no sshd (make test installs Debian's openssh-server): %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("privilege separation dir: %v", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("host key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("marshal host key: %v", err)
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	writeFile(t, hostKeyFile, pem.EncodeToMemory(block))
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("host signer: %v", err)
	}
	s := &SSHD{
		Addr:           "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		User:           u.Username,
		HostKey:        signer.PublicKey(),
		KnownHosts:     filepath.Join(dir, "known_hosts"),
		AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
		t:              t,
		config:         filepath.Join(dir, "sshd_config"),
		log:            &testkit.Buffer{},
	}
	s.WriteKnownHosts(s.HostKey)
	writeFile(t, s.AuthorizedKeys, nil)
	_, port, _ := net.SplitHostPort(s.Addr)
	production, err := ProductionSettings()
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Join(append([]string{
		"ListenAddress 127.0.0.1:" + port,
		"HostKey " + hostKeyFile,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"StrictModes no",
		"PubkeyAuthentication yes",
		"UsePAM no",
		"LogLevel VERBOSE",
		"AuthorizedKeysFile " + s.AuthorizedKeys,
	}, production...), "\n") + "\n"
	writeFile(t, s.config, []byte(conf))
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log.String())
		}
	})
	s.Start()
	return s
}

// Start starts sshd (again, after Stop) and waits until it accepts connections.
func (s *SSHD) Start() {
	s.t.Helper()
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", s.config)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.WaitDelay = 2 * time.Second // a session process may outlive the kill by a moment
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start sshd: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(min(testkit.Wait(s.t), testkit.MaxEventually))
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sshd not listening on %s: %v\n%s", s.Addr, err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills sshd and its sessions, and waits for it.
func (s *SSHD) Stop() {
	s.KillSessions()
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// KillSessions kills the sshd processes serving connections (the listener's descendants),
// cutting every client off at once while the listener stays up. It returns how many it killed.
func (s *SSHD) KillSessions() int { return s.SignalSessions(syscall.SIGKILL) }

// SignalSessions sends sig to the sshd processes serving connections: SIGSTOP makes the OMA
// look dead to its clients without closing anything, SIGCONT wakes it. It returns how many
// processes it signalled. The commands their sessions run (the tunnel's one forced /bin/false
// per connection, through the user's shell and its rc files) are left to end on their own: a
// shell killed midway may leave a lock behind (pyenv's rehash in root's .bashrc does) that
// holds up every later session.
func (s *SSHD) SignalSessions(sig syscall.Signal) int {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return 0
	}
	n := 0
	for _, p := range testkit.Descendants(cmd.Process.Pid) {
		if !strings.HasPrefix(p.CommandLine(), "sshd") { // sshd: user@notty, sshd-session: ...
			continue
		}
		if syscall.Kill(p.PID, sig) == nil {
			n++
		}
	}
	return n
}

// Authorize writes the authorized_keys file, one line per entry, such as
// `restrict,port-forwarding,permitopen="127.0.0.1:4222" ssh-ed25519 AAAA...`.
func (s *SSHD) Authorize(lines ...string) {
	s.t.Helper()
	writeFile(s.t, s.AuthorizedKeys, []byte(strings.Join(lines, "\n")+"\n"))
}

// WriteKnownHosts writes the known_hosts file with key as the host key of Addr.
func (s *SSHD) WriteKnownHosts(key ssh.PublicKey) {
	s.t.Helper()
	line := fmt.Sprintf("[127.0.0.1]:%s %s", portOf(s.Addr), ssh.MarshalAuthorizedKey(key))
	writeFile(s.t, s.KnownHosts, []byte(line))
}

// Log returns what sshd has logged so far.
func (s *SSHD) Log() string { return s.log.String() }

// ProductionSettings returns the settings of scripts/sshd-godwit.conf's Match block, the
// production snippet, without its AuthorizedKeysFile, one per line: the tests' sshd and make
// run's apply them to every user, so that what they test is what the OMA runs.
func ProductionSettings() ([]string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("sshd-godwit.conf: no source path to find it by")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "..", "scripts", "sshd-godwit.conf")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("production sshd settings: %w", err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case fields[0] == "Match":
			in = true
		case in && fields[0] != "AuthorizedKeysFile":
			out = append(out, strings.Join(fields, " "))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("production sshd settings: no Match block in %s", path)
	}
	return out, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// portOf returns the port of host:port.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// writeFile writes data to path with mode 0600 or fails t.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
