package tunnel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The outcomes of the session command in State.NoDelay.
const (
	noDelayPending  = "pending"        // the session command is under way
	noDelaySession  = "session"        // it ran: sshd turned TCP_NODELAY on
	noDelayServer   = "server default" // OpenSSH 10.1 or later sets it itself
	noDelayNotTried = "not OpenSSH"    // another server: no session tried
	noDelayOff      = "off"            // Config.NoSession
)

// noDelayCommand is what the session asks to run; the key's forced command
// (command="/bin/false", sshd's ForceCommand /bin/false) runs instead.
const noDelayCommand = "godwit-nodelay"

// noDelay makes the OMA's sshd turn TCP_NODELAY on for c's connection: an
// OpenSSH sshd before 10.1 does so only once a session runs a command, so on
// a forwarding-only connection its window adjustments wait behind Nagle's
// algorithm (about two round trips per channel window instead of one). It
// opens one session, asks it to run a command (the key's forced /bin/false
// runs instead; its exit status is no failure) and closes it. It does
// nothing when the server needs no session (serverNoDelay). The session does
// not hold up the connection's channels: run it beside them, once per
// connection. It returns when the session ended or ctx ended, with an error
// when sshd refused the session or the command (or ctx ended first).
func noDelay(ctx context.Context, c *ssh.Client) error {
	if serverNoDelay(c.ServerVersion()) != "" {
		return nil
	}
	type opened struct {
		s   *ssh.Session
		err error
	}
	open := make(chan opened, 1)
	go func() {
		// NewSession waits for sshd's answer, which closing c also ends.
		s, err := c.NewSession()
		open <- opened{s, err}
	}()
	var s *ssh.Session
	select {
	case o := <-open:
		if o.err != nil {
			return fmt.Errorf("nodelay session: %w", o.err)
		}
		s = o.s
	case <-ctx.Done():
		go func() {
			if o := <-open; o.s != nil {
				o.s.Close()
			}
		}()
		return fmt.Errorf("nodelay session: %w", ctx.Err())
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if err := s.Start(noDelayCommand); err != nil {
		return fmt.Errorf("nodelay session: %w", err)
	}
	// sshd set TCP_NODELAY before it accepted the command; wait for the
	// forced command to end so that its session closes cleanly.
	err := s.Wait()
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("nodelay session: %w", ctx.Err())
	case err == nil, errors.As(err, &exit), errors.As(err, &missing):
		return nil
	}
	return fmt.Errorf("nodelay session: %w", err)
}

// serverNoDelay returns why a server with SSH version string version (as
// ssh.Client.ServerVersion gives it, such as "SSH-2.0-OpenSSH_9.2p1
// Debian-2+deb12u3") needs no session command: noDelayServer for OpenSSH
// 10.1 and later, noDelayNotTried for other servers; "" when it needs one.
func serverNoDelay(version []byte) string {
	_, soft, ok := strings.Cut(string(version), "OpenSSH_")
	if !ok {
		return noDelayNotTried
	}
	end := strings.IndexFunc(soft, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end >= 0 {
		soft = soft[:end]
	}
	majorS, minorS, _ := strings.Cut(soft, ".")
	major, err := strconv.Atoi(majorS)
	if err != nil {
		return noDelayNotTried
	}
	minor, _ := strconv.Atoi(minorS)
	if major > 10 || major == 10 && minor >= 1 {
		return noDelayServer
	}
	return ""
}

// runNoDelay runs noDelay on the tunnel's connection c and records the
// outcome on its link l, for State.NoDelay and ConnState.NoDelay. The
// session gets Config.DialTimeout, as the handshake does; a failure is
// logged, never fatal. It returns when ctx ends (the outcome then stays
// pending).
func (t *Tunnel) runNoDelay(ctx context.Context, c *ssh.Client, l *link) {
	outcome := serverNoDelay(c.ServerVersion())
	switch {
	case t.cfg.NoSession:
		outcome = noDelayOff
	case outcome == "":
		l.setNoDelay(noDelayPending)
		outcome = noDelaySession
		sctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
		err := noDelay(sctx, c)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // the connection is being closed
			}
			outcome = "failed: " + err.Error()
			t.log.Warn("session command for TCP_NODELAY on the OMA's sshd: channel windows wait behind Nagle's algorithm (README: Long links)",
				"err", err, "server", string(c.ServerVersion()), "conn", l.index)
		}
	}
	l.setNoDelay(outcome)
}

// setNoDelay records the outcome of the link's session command.
func (l *link) setNoDelay(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.noDelay = s
}
