package tunnel_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/vma/tunnel"
)

// TestSessionTurnsOnNoDelay reads TCP_NODELAY on sshd's own end of the
// tunnel's connection (the production settings and key line: ForceCommand
// and command="/bin/false"): the tunnel's one session command turns it on.
// Each data connection runs it too. The control, a tunnel with Config.NoSession, reads it off, so the reading
// is of the right socket (OpenSSH 10.1 and later set it always: no control
// there).
func TestSessionTurnsOnNoDelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reading sshd's socket option takes pidfd_getfd over sshd (CAP_SYS_PTRACE)")
	}
	r := newRig(t)
	line, err := authkeys.Line(authkeys.Forwards{}, tunnel.AuthorizedKey(r.key), "nodelay")
	if err != nil {
		t.Fatal(err)
	}
	r.sshd.Authorize(line)
	// settled waits until every one of tun's n connections is up and its
	// session command's outcome known.
	settled := func(tun *tunnel.Tunnel, n int) tunnel.State {
		var s tunnel.State
		checkFor(t, 10*time.Second, func() error {
			s = tun.State()
			if !s.Connected || len(s.Connections) != n {
				return fmt.Errorf("State() = %+v, want connected, %d connections", s, n)
			}
			for _, c := range s.Connections {
				if !c.Connected || c.LocalAddr == "" || c.NoDelay == "" || c.NoDelay == "pending" {
					return fmt.Errorf("State().Connections = %+v, want each up and its session command's outcome", s.Connections)
				}
			}
			return nil
		})
		return s
	}

	// The primary and two data connections (pool.go): each runs the command.
	cfg := r.config(t)
	cfg.RemoteListen, cfg.Connections = "", 3
	// The forced command runs through the user's shell and its rc files,
	// which may be slow on a test machine (root's .bashrc).
	cfg.DialTimeout = 2 * time.Minute
	s := settled(run(t, cfg), 3)
	if s.NoDelay != s.Connections[0].NoDelay {
		t.Errorf("State().NoDelay = %q, want the primary's, %q", s.NoDelay, s.Connections[0].NoDelay)
	}
	serverDefault := false
	for i, c := range s.Connections {
		if c.NoDelay != "session" && c.NoDelay != "server default" {
			t.Fatalf("connection %d: NoDelay = %q, want session (or server default on OpenSSH 10.1+)", i, c.NoDelay)
		}
		serverDefault = c.NoDelay == "server default"
		on, err := r.sshd.NoDelay(c.LocalAddr)
		if err != nil {
			t.Fatal(err)
		}
		if !on {
			t.Errorf("connection %d: TCP_NODELAY on sshd's socket of %s is off after the session command (%s)", i, c.LocalAddr, c.NoDelay)
		}
	}
	if serverDefault {
		t.Log("OpenSSH 10.1 or later sets TCP_NODELAY itself: no control")
		return
	}

	cfg.NoSession, cfg.Connections = true, 1
	s = settled(run(t, cfg), 1)
	if s.NoDelay != "off" {
		t.Errorf("State().NoDelay = %q with NoSession, want off", s.NoDelay)
	}
	local := s.Connections[0].LocalAddr
	on, err := r.sshd.NoDelay(local)
	if err != nil {
		t.Fatal(err)
	}
	if on {
		t.Errorf("TCP_NODELAY on sshd's socket of %s is on without a session: the test cannot tell", local)
	}
}
