package tunnel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
)

// rig is an sshd playing the OMA, an echo server behind it, and the VMA's key.
type rig struct {
	sshd       *tunneltest.SSHD
	key        ssh.Signer
	keyFile    string // the key's private half, for OpenSSH's ssh
	echo       string // an echo server the key may reach
	remote     string // the Unix socket of the key's remote forward, on the OMA side
	authorized string // the authorized_keys line for key
}

// newRig starts the rig; the key may also reach the addresses in open.
func newRig(t testing.TB, open ...string) *rig {
	t.Helper()
	keyDir := t.TempDir()
	key, err := tunnel.LoadOrCreateKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		sshd:    tunneltest.StartSSHD(t),
		key:     key,
		keyFile: filepath.Join(keyDir, tunnel.KeyFile),
		echo:    startEcho(t),
		remote:  filepath.Join(t.TempDir(), "api.sock"),
	}
	permit := ""
	for _, a := range append([]string{r.echo}, open...) {
		permit += fmt.Sprintf(`,permitopen="%s"`, a)
	}
	r.authorized = fmt.Sprintf(`restrict,port-forwarding%s %s`, permit, tunnel.AuthorizedKey(key))
	r.sshd.Authorize(r.authorized)
	return r
}

// config is the tunnel's config for r, quick to notice drops and to reconnect.
func (r *rig) config(t testing.TB) tunnel.Config {
	return tunnel.Config{
		Addr: r.sshd.Addr, User: r.sshd.User, Key: r.key, KnownHosts: r.sshd.KnownHosts,
		Keepalive: 300 * time.Millisecond, ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond,
		RemoteListen: r.remote, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// run starts cfg's tunnel; cleanup stops it and waits for Run to return.
func run(t testing.TB, cfg tunnel.Config) *tunnel.Tunnel {
	t.Helper()
	tun, err := tunnel.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(testkit.Wait(t)):
			t.Error("Run did not return after its context ended")
		}
	})
	return tun
}

// startEcho starts a TCP echo server on 127.0.0.1 and returns its address.
func startEcho(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() { serveEcho(l) })
	return l.Addr().String()
}

// echoOnForward serves echo on the tunnel's remote forward until the test
// ends, and returns the forward's listener.
func echoOnForward(t *testing.T, tun *tunnel.Tunnel) net.Listener {
	ln := tun.Listener()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() { serveEcho(ln) })
	return ln
}

// serveEcho echoes every connection l accepts until l fails.
func serveEcho(l net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			io.Copy(c, c)
		})
	}
}

// roundTrip sends a line over c and checks it comes back.
func roundTrip(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != line+"\n" {
		t.Fatalf("echo = %q, want %q", got, line+"\n")
	}
}

// dial dials addr through tun within 10s.
func dial(t *testing.T, tun *tunnel.Tunnel, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("DialContext(%q) = %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkFor polls f until it returns nil or d has passed, or longer when
// the test's deadline allows more (as testkit.Eventually).
func checkFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	d = max(d, min(testkit.Wait(t), testkit.MaxEventually))
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reachForward plays the OMA: it connects to the forward's socket, checks the VMA's proof of
// identity and that an echo comes back from the VMA's side, retrying while the forward is being
// set up and removing the socket an ended session left behind, as the OMA does.
func (r *rig) reachForward(t *testing.T) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := tunnel.RemoveStale(ctx, r.remote, 50*time.Millisecond); err != nil {
			return err
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", r.remote)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := tunnel.Verify(ctx, c, r.key.PublicKey()); err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintln(c, "hello vma"); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read through forward: %w", err)
		}
		if got != "hello vma\n" {
			return fmt.Errorf("echo through forward = %q", got)
		}
		return nil
	})
}

func TestDial(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	roundTrip(t, dial(t, tun, r.echo), "hello oma")
	// nats.go's dialer has no context: the adapter bounds it.
	c, err := tunnel.Dialer{Tunnel: tun, Timeout: 5 * time.Second}.Dial("tcp", r.echo)
	if err != nil {
		t.Fatalf("Dialer.Dial = %v", err)
	}
	roundTrip(t, c, "hello nats")
	if n := tun.State().Channels; n != 2 {
		t.Errorf("State().Channels = %d with two connections open, want 2", n)
	}
	c.Close()
	c.Close() // counted once
	if n := tun.State().Channels; n != 1 {
		t.Errorf("State().Channels = %d after one was closed (twice), want 1", n)
	}

	other := startEcho(t) // listening, but outside permitopen
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = tun.DialContext(ctx, "tcp", other)
	var refused *ssh.OpenChannelError
	if !errors.As(err, &refused) || refused.Reason != ssh.Prohibited || !strings.Contains(err.Error(), other) {
		t.Fatalf("DialContext(%q) outside permitopen = %v, want a prohibited *ssh.OpenChannelError naming it", other, err)
	}
	if s := tun.State(); !s.Connected || s.BytesIn == 0 || s.BytesOut == 0 || s.Reconnects != 0 {
		t.Errorf("State() = %+v, want connected, bytes both ways, no reconnects", s)
	}
}

// TestDeadline: a connection through the tunnel honours a deadline set and then cleared, and a
// deadline that passes unblocks a read with os.ErrDeadlineExceeded.
func TestDeadline(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	c := dial(t, tun, r.echo)
	const d = 2 * time.Second // a round trip through sshd on a loaded machine takes less
	c.SetDeadline(time.Now().Add(d))
	roundTrip(t, c, "in time")
	c.SetDeadline(time.Time{})
	time.Sleep(d + 100*time.Millisecond) // past the cleared deadline
	roundTrip(t, c, "cleared")

	c = dial(t, tun, r.echo)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestRemoteForward(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	ln := echoOnForward(t, tun)
	if ln.Addr().String() != r.remote {
		t.Errorf("Listener().Addr() = %v, want %s", ln.Addr(), r.remote)
	}
	r.reachForward(t)

	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

// TestForwardProof: a connection to the forward's socket reaches the VMA's side only once the
// VMA has answered the challenge with its key; another key does not pass, nor does a client that
// sends anything else (HTTP, say) first.
func TestForwardProof(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	echoOnForward(t, tun)
	r.reachForward(t)

	stranger, err := tunnel.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", r.remote)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := tunnel.Verify(ctx, c, stranger.PublicKey()); !errors.Is(err, tunnel.ErrNotVMA) {
		t.Errorf("Verify with another key = %v, want ErrNotVMA", err)
	}

	plain, err := (&net.Dialer{}).DialContext(ctx, "unix", r.remote)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	request := "GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
	if _, err := io.WriteString(plain, request); err != nil {
		t.Fatal(err)
	}
	plain.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(plain); len(got) != 0 || err != nil {
		t.Errorf("a request without the challenge got %q, %v; want the connection closed unanswered", got, err)
	}
}

// TestOnlyItsOwnForwards: with the production sshd settings a VMA's key gets its Unix socket
// forward and what its permitopen names, and nothing else: no TCP port to listen on (the
// forward of old, which a local user could squat), no connection to a Unix socket on the OMA.
func TestOnlyItsOwnForwards(t *testing.T) {
	r := newRig(t)
	c, err := ssh.Dial("tcp", r.sshd.Addr, &ssh.ClientConfig{
		User: r.sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(r.key)},
		HostKeyCallback: ssh.FixedHostKey(r.sshd.HostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := startEcho(t)
	tests := []struct {
		name string
		try  func() (io.Closer, error)
		want bool
	}{
		{"its socket", func() (io.Closer, error) { return c.ListenUnix(r.remote) }, true},
		{"a permitted port", func() (io.Closer, error) { return c.Dial("tcp", r.echo) }, true},
		{"a TCP listen", func() (io.Closer, error) { return c.Listen("tcp", "127.0.0.1:0") }, false},
		{"a TCP listen on a port of its own", func() (io.Closer, error) {
			return c.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", tunneltest.FreePort(t)))
		}, false},
		{"another port", func() (io.Closer, error) { return c.Dial("tcp", other) }, false},
		{"a Unix socket on the OMA", func() (io.Closer, error) { return c.Dial("unix", r.remote) }, false},
	}
	for _, tt := range tests {
		x, err := tt.try()
		if err == nil {
			x.Close()
		}
		if got := err == nil; got != tt.want {
			t.Errorf("%s: error %v, want allowed=%v", tt.name, err, tt.want)
		}
	}
}

func TestRefused(t *testing.T) {
	r := newRig(t)
	stranger, err := tunnel.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		setup  func(cfg *tunnel.Config)
		check  func(err error) bool
		inText []string
	}{
		{
			name: "wrong host key",
			setup: func(cfg *tunnel.Config) {
				r.sshd.WriteKnownHosts(stranger.PublicKey())
			},
			check: func(err error) bool {
				var hk *tunnel.HostKeyError
				return errors.As(err, &hk) && !hk.Unknown
			},
			inText: []string{r.sshd.KnownHosts, ssh.FingerprintSHA256(r.sshd.HostKey), "does not match"},
		},
		{
			name: "unknown host",
			setup: func(cfg *tunnel.Config) {
				cfg.KnownHosts = filepath.Join(t.TempDir(), "empty_known_hosts")
				if err := os.WriteFile(cfg.KnownHosts, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(err error) bool {
				var hk *tunnel.HostKeyError
				return errors.As(err, &hk) && hk.Unknown
			},
			inText: []string{"empty_known_hosts", ssh.FingerprintSHA256(r.sshd.HostKey), "is not in"},
		},
		{
			name:   "key not authorized",
			setup:  func(cfg *tunnel.Config) { cfg.Key = stranger },
			check:  func(err error) bool { return errors.Is(err, tunnel.ErrUnauthorized) },
			inText: []string{ssh.FingerprintSHA256(stranger.PublicKey()), "authorized_keys"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer r.sshd.WriteKnownHosts(r.sshd.HostKey)
			cfg := r.config(t)
			tt.setup(&cfg)
			tun := run(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			c, err := tun.DialContext(ctx, "tcp", r.echo)
			if err == nil {
				c.Close()
			}
			if !tt.check(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("DialContext = %v, want the refusal and the deadline", err)
			}
			for _, s := range tt.inText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if s := tun.State(); s.Connected || s.LastError == "" {
				t.Errorf("State() = %+v, want down with the error", s)
			}
		})
	}
}

func TestReconnect(t *testing.T) {
	tests := []struct {
		name string
		cut  func(s *tunneltest.SSHD)
	}{
		{"session killed", func(s *tunneltest.SSHD) {
			if s.KillSessions() == 0 {
				t.Fatal("no sshd session to kill")
			}
		}},
		{"sshd restarted", func(s *tunneltest.SSHD) { s.Stop(); s.Start() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			cfg := r.config(t)
			outages := make(chan tunnel.Outage, 10)
			cfg.OnRestore = func(o tunnel.Outage) { outages <- o }
			tun := run(t, cfg)
			echoOnForward(t, tun)
			r.reachForward(t)
			roundTrip(t, dial(t, tun, r.echo), "before")
			if len(outages) != 0 {
				t.Fatalf("%d outages reported before the cut", len(outages))
			}

			cut := time.Now()
			tt.cut(r.sshd)
			checkFor(t, 10*time.Second, func() error {
				if s := tun.State(); !s.Connected || s.Reconnects < 1 {
					return fmt.Errorf("State() = %+v, want connected again", s)
				}
				return nil
			})
			r.reachForward(t)
			roundTrip(t, dial(t, tun, r.echo), "after")
			if n := len(outages); n != 1 {
				t.Fatalf("%d outages reported, want 1", n)
			}
			o := <-outages
			if o.LostAt.Before(cut) || !o.RestoredAt.After(o.LostAt) || o.RestoredAt.After(time.Now()) ||
				o.Err == "" || o.Attempts < 1 || o.Reconnects != 1 {
				t.Errorf("outage = %+v, want lost after the cut at %v, restored since, with a cause and attempts", o, cut)
			}
		})
	}
}

// TestDeadPeer: an OMA that stops answering without closing anything is noticed by the
// keepalive; the new connection's forward is refused while the frozen session still holds the
// port, and is requested again until it comes back.
func TestDeadPeer(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	echoOnForward(t, tun)
	r.reachForward(t)

	frozen := r.sshd.SignalSessions(syscall.SIGSTOP)
	if frozen == 0 {
		t.Fatal("no sshd session to freeze")
	}
	t.Cleanup(func() { r.sshd.SignalSessions(syscall.SIGCONT) })
	checkFor(t, 10*time.Second, func() error {
		if s := tun.State(); !s.Connected || s.Reconnects < 1 || !strings.Contains(s.LastError, "keepalive") {
			return fmt.Errorf("State() = %+v, want connected again after a keepalive went unanswered", s)
		}
		return nil
	})
	roundTrip(t, dial(t, tun, r.echo), "after")
	// Wake the frozen session: it finds its client gone and frees the port.
	if s := tun.State(); s.Forwarding {
		t.Errorf("State() = %+v while the frozen session holds the port, want not forwarding", s)
	}
	r.sshd.SignalSessions(syscall.SIGCONT)
	r.reachForward(t)
	if s := tun.State(); !s.Forwarding {
		t.Errorf("State() = %+v, want forwarding", s)
	}
}

// TestDialWaits: a dial made while the tunnel is down completes once it is back; failing to make
// the first connection is not reported as an outage.
func TestDialWaits(t *testing.T) {
	r := newRig(t)
	r.sshd.Stop()
	cfg := r.config(t)
	cfg.OnRestore = func(o tunnel.Outage) { t.Errorf("OnRestore(%+v): a first connection made late is not an outage", o) }
	tun := run(t, cfg)
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := tun.DialContext(ctx, "tcp", r.echo)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the dial start waiting
	r.sshd.Start()
	if err := <-got; err != nil {
		t.Fatalf("DialContext while down = %v, want it to wait for the tunnel", err)
	}
}

// TestNoLeak: once Run has returned and the listener is closed, nothing of the tunnel or the ssh
// library is left running.
func TestNoLeak(t *testing.T) {
	r := newRig(t)
	t.Run("use", func(t *testing.T) {
		tun := run(t, r.config(t))
		echoOnForward(t, tun)
		r.reachForward(t)
		roundTrip(t, dial(t, tun, r.echo), "hello")
		r.sshd.KillSessions()
		checkFor(t, 10*time.Second, func() error {
			if tun.State().Reconnects < 1 {
				return errors.New("not reconnected")
			}
			return nil
		})
		r.reachForward(t)
	})
	checkFor(t, 5*time.Second, func() error {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "vma/tunnel.") || strings.Contains(g, "x/crypto/ssh.") {
				return fmt.Errorf("goroutine left:\n%s", g)
			}
		}
		return nil
	})
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	first, err := tunnel.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, tunnel.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	again, err := tunnel.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if a, b := tunnel.AuthorizedKey(first), tunnel.AuthorizedKey(again); a != b || !strings.HasPrefix(a, "ssh-ed25519 AAAA") {
		t.Errorf("AuthorizedKey = %q then %q, want one ssh-ed25519 key", a, b)
	}
	if err := os.WriteFile(filepath.Join(dir, tunnel.KeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tunnel.LoadOrCreateKey(dir); err == nil {
		t.Error("LoadOrCreateKey over junk = nil error, want one")
	}
}

func TestNewChecksConfig(t *testing.T) {
	key, err := tunnel.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := tunnel.Config{Addr: "127.0.0.1:22", User: "vma", Key: key, InsecureIgnoreHostKey: true}
	tests := []struct {
		name string
		edit func(*tunnel.Config)
	}{
		{"no port", func(c *tunnel.Config) { c.Addr = "oma" }},
		{"no user", func(c *tunnel.Config) { c.User = "" }},
		{"no key", func(c *tunnel.Config) { c.Key = nil }},
		{"no host key check", func(c *tunnel.Config) { c.InsecureIgnoreHostKey = false }},
		{"missing known_hosts", func(c *tunnel.Config) { c.InsecureIgnoreHostKey = false; c.KnownHosts = "/nonexistent" }},
		{"bad remote listen", func(c *tunnel.Config) { c.RemoteListen = "9081" }},
		{"tcp remote listen", func(c *tunnel.Config) { c.RemoteListen = "127.0.0.1:9081" }},
		{"relative socket", func(c *tunnel.Config) { c.RemoteListen = "tunnels/vma-1.sock" }},
		{"long socket path", func(c *tunnel.Config) { c.RemoteListen = "/" + strings.Repeat("d", tunnel.MaxSocketPath) }},
		{"negative connections", func(c *tunnel.Config) { c.Connections = -1 }},
		{"too many connections", func(c *tunnel.Config) { c.Connections = tunnel.MaxConnections + 1 }},
	}
	if _, err := tunnel.New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := tunnel.New(cfg); err == nil {
				t.Errorf("New = nil error, want one")
			}
		})
	}
}

// TestAlternates: a tunnel given the sshds of an active OMA and of its
// standby uses the first; once that one is gone for good, it connects to
// the second, and its dials and remote forward work there.
func TestAlternates(t *testing.T) {
	r := newRig(t)
	standby := tunneltest.StartSSHD(t)
	standby.Authorize(r.authorized)
	known, err := os.ReadFile(r.sshd.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(standby.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.sshd.KnownHosts, append(append(known, '\n'), other...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := r.config(t)
	cfg.Alternates = []string{standby.Addr}
	tun := run(t, cfg)
	echoOnForward(t, tun)
	r.reachForward(t)
	roundTrip(t, dial(t, tun, r.echo), "through the first OMA")
	if got := tun.Addr(); got != r.sshd.Addr {
		t.Fatalf("the tunnel uses %s, want the first OMA's %s", got, r.sshd.Addr)
	}

	r.sshd.Stop() // the active OMA's machine is gone
	checkFor(t, 10*time.Second, func() error {
		if s := tun.State(); !s.Connected || tun.Addr() != standby.Addr {
			return fmt.Errorf("State() = %+v through %s, want connected to the standby %s", s, tun.Addr(), standby.Addr)
		}
		return nil
	})
	r.reachForward(t)
	roundTrip(t, dial(t, tun, r.echo), "through the standby")
}
