package tunnels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/vma/tunnel"
)

// DefaultInterval is how often a Proxy looks for new VMAs and checks their sockets when
// Config.Interval is zero.
const DefaultInterval = time.Second

// verifyTimeout bounds the identity check of a VMA on its socket.
const verifyTimeout = 10 * time.Second

// lister lists the registered VMAs; *vmas.Registry satisfies it.
type lister interface {
	VMAs() ([]store.VMA, error)
}

// Config configures New. Only Dir is required.
type Config struct {
	// Dir holds the VMAs' API sockets, <Dir>/<id>.sock; it is created mode 0700 (and made so
	// if it exists with another mode). The VMAs' SSH sessions must run as the OMA's user.
	Dir string
	// Host is the address the API ports are held on; empty means 127.0.0.1.
	Host string
	// Interval is how often the registered VMAs are listed (a port for each new one, none for
	// one removed) and their sockets checked (stale ones removed); 0 means DefaultInterval.
	Interval time.Duration
	// Logger receives what happens to ports and sockets, and the proxied requests; nil discards.
	Logger *slog.Logger
}

// Proxy holds each registered VMA's API port and forwards requests into its socket. Run it once.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	vmas  lister
	mu    sync.Mutex
	ports map[string]*port // by VMA id
}

// New checks cfg, creates its directory, and returns a Proxy for the VMAs vmas lists.
func New(cfg Config, vmas lister) (*Proxy, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tunnels: no socket directory")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("tunnels: socket directory: %w", err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tunnels: create socket directory: %w", err)
	}
	fi, err := os.Lstat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("tunnels: socket directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tunnels: socket directory %s is not a directory", cfg.Dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("tunnels: socket directory %s has mode %v, want 0700: %w", cfg.Dir, fi.Mode().Perm(), err)
		}
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Proxy{cfg: cfg, log: cfg.Logger, vmas: vmas, ports: make(map[string]*port)}, nil
}

// SocketPath is the Unix socket VMA id's remote forward is made on, in dir: what the VMA's
// -tunnel-listen must be.
func SocketPath(dir, id string) string { return filepath.Join(dir, id+".sock") }

// Addrs returns the address each VMA's port is held on, by VMA id; a VMA whose port could not
// be bound (another process holds it) is missing.
func (p *Proxy) Addrs() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.ports))
	for id, pt := range p.ports {
		if pt.ln != nil {
			out[id] = pt.ln.Addr().String()
		}
	}
	return out
}

// Unheld returns, by VMA id, why the OMA does not hold a VMA's API port
// (another process has it, and gets what is sent there); it is empty when
// every port is held.
func (p *Proxy) Unheld() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for id, pt := range p.ports {
		if pt.ln == nil && pt.bindErr != "" {
			out[id] = pt.bindErr
		}
	}
	return out
}

// Run holds the ports and checks the sockets every Interval until ctx ends, then stops serving
// (draining requests in flight) and returns nil once every port is closed. A port it cannot
// bind is logged and tried again each Interval.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer p.closeAll()
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		p.reconcile(ctx, &wg)
		p.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// port is one VMA's API port on the OMA.
type port struct {
	id      string
	port    int
	key     ssh.PublicKey // nil: the VMA has no SSH key, so no tunnel
	path    string
	ln      net.Listener // nil while the port cannot be bound
	bindErr string       // the last bind error logged
	stop    context.CancelFunc
	state   string // the socket's last logged state
}

// reconcile opens a port for each VMA that has none (or whose port or key changed) and closes
// the ports of VMAs no longer registered.
func (p *Proxy) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	vmas, err := p.vmas.VMAs()
	if err != nil {
		p.log.Error("list VMAs for their API ports", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]bool, len(vmas))
	for _, v := range vmas {
		if v.APIPort == 0 {
			continue
		}
		seen[v.ID] = true
		var key ssh.PublicKey
		if v.SSHPublicKey != "" {
			if key, _, _, _, err = ssh.ParseAuthorizedKey([]byte(v.SSHPublicKey)); err != nil {
				p.log.Error("VMA's SSH key unreadable: its API is not forwarded", "vma", v.ID, "err", err)
				key = nil
			}
		}
		pt := p.ports[v.ID]
		if pt != nil && (pt.port != v.APIPort || !sameKey(pt.key, key)) {
			pt.close()
			pt = nil
		}
		if pt == nil {
			pt = &port{id: v.ID, port: v.APIPort, key: key, path: SocketPath(p.cfg.Dir, v.ID)}
			p.ports[v.ID] = pt
			if len(pt.path) > tunnel.MaxSocketPath {
				p.log.Error("VMA's socket path too long: its API is not forwarded (set a shorter tunnel directory)",
					"vma", v.ID, "path", pt.path, "max", tunnel.MaxSocketPath)
				pt.key = nil
			}
		}
		if pt.ln == nil {
			p.listen(ctx, wg, pt)
		}
	}
	for id, pt := range p.ports {
		if !seen[id] {
			pt.close()
			delete(p.ports, id)
		}
	}
}

// listen binds pt's port and serves it; a failure is logged once per distinct error.
func (p *Proxy) listen(ctx context.Context, wg *sync.WaitGroup, pt *port) {
	addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(pt.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if err.Error() != pt.bindErr {
			p.log.Error("cannot hold a VMA's API port: another process has it, and gets what is sent there",
				"vma", pt.id, "addr", addr, "err", err)
			pt.bindErr = err.Error()
		}
		return
	}
	pt.ln, pt.bindErr = ln, ""
	sctx, stop := context.WithCancel(ctx)
	pt.stop = stop
	h := p.handler(pt)
	wg.Go(func() {
		if err := httpserver.Serve(sctx, ln, h, httpserver.Config{Logger: p.log.With("vma", pt.id)}); err != nil {
			p.log.Error("serve a VMA's API port", "vma", pt.id, "addr", addr, "err", err)
		}
	})
	p.log.Info("holding a VMA's API port", "vma", pt.id, "addr", ln.Addr().String(), "socket", pt.path)
}

// close stops serving pt's port.
func (pt *port) close() {
	if pt.stop != nil {
		pt.stop()
	}
	pt.ln = nil
}

// closeAll stops serving every port.
func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range p.ports {
		pt.close()
	}
}

// sameKey reports whether a and b are the same key, or both nil.
func sameKey(a, b ssh.PublicKey) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return string(a.Marshal()) == string(b.Marshal())
}

// errNotConnected means a VMA's socket is absent or refuses connections.
var errNotConnected = errors.New("not connected")

// errNoKey means a VMA has no SSH key registered, so it has no tunnel to forward into.
var errNoKey = errors.New("no SSH key registered: its API is not forwarded through a tunnel")

// dial connects to a VMA's socket and checks the VMA's identity there. A connection reset
// before the VMA answers is tried once more: a forward just made may refuse a connection for a
// moment (the SSH client learns of its own forward after sshd has bound the socket).
func dial(ctx context.Context, path string, key ssh.PublicKey) (net.Conn, error) {
	c, err := dialOnce(ctx, path, key)
	if err == nil || errors.Is(err, errNotConnected) || errors.Is(err, errNoKey) || errors.Is(err, tunnel.ErrNotVMA) {
		return c, err
	}
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ctx.Done():
		return nil, err
	}
	return dialOnce(ctx, path, key)
}

// dialOnce connects to a VMA's socket and checks the VMA's identity there.
func dialOnce(ctx context.Context, path string, key ssh.PublicKey) (net.Conn, error) {
	if key == nil {
		return nil, errNoKey
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %w", errNotConnected, err)
		}
		return nil, fmt.Errorf("connect to the VMA's socket: %w", err)
	}
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	if err := tunnel.Verify(vctx, c, key); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// handler forwards requests into pt's socket, or answers why it cannot.
func (p *Proxy) handler(pt *port) http.Handler {
	key, path, id := pt.key, pt.path, pt.id
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "vma.invalid" // the Host header stays the client's
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx, path, key)
			},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		},
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case errors.Is(err, errNotConnected):
				problem.Write(w, http.StatusServiceUnavailable, "", fmt.Sprintf("VMA %s not connected", id))
			case errors.Is(err, errNoKey):
				problem.Write(w, http.StatusServiceUnavailable, "", fmt.Sprintf("VMA %s not connected: %v", id, err))
			case errors.Is(err, tunnel.ErrNotVMA):
				p.log.Error("a VMA's socket answered without its key: request not sent", "vma", id, "socket", path, "err", err)
				problem.Write(w, http.StatusServiceUnavailable, "", fmt.Sprintf("VMA %s not connected: its tunnel socket answered without its SSH key", id))
			case r.Context().Err() != nil: // the client went away
			default:
				p.log.Warn("forward a request to a VMA", "vma", id, "err", err)
				problem.Write(w, http.StatusBadGateway, "", fmt.Sprintf("VMA %s: %v", id, err))
			}
		},
	}
}

// sweep checks every VMA's socket: a stale one (its session ended) is removed so that the
// VMA's next forward can be made, and so is one held by anything that cannot prove it is that
// VMA. Changes are logged once.
func (p *Proxy) sweep(ctx context.Context) {
	p.mu.Lock()
	var pts []*port
	for _, pt := range p.ports {
		if pt.key != nil {
			pts = append(pts, pt)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pt := range pts {
		wg.Go(func() { p.check(ctx, pt) })
	}
	wg.Wait()
}

// check checks pt's socket; see sweep.
func (p *Proxy) check(ctx context.Context, pt *port) {
	state, level := "absent", slog.LevelInfo
	var cause error
	c, err := dial(ctx, pt.path, pt.key)
	switch {
	case err == nil:
		c.Close()
		state = "connected"
	case errors.Is(err, tunnel.ErrNotVMA):
		// Another VMA's key bound it while this VMA was down, or something else answers
		// there: remove it so that the VMA's own forward can be made again.
		state, level, cause = "held by another key: removed", slog.LevelError, err
		if rerr := os.Remove(pt.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			state, cause = "held by another key", errors.Join(err, rerr)
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		removed, rerr := tunnel.RemoveStale(ctx, pt.path, 100*time.Millisecond)
		switch {
		case rerr != nil:
			state, level, cause = "stale", slog.LevelError, rerr
		case removed:
			p.log.Info("removed the socket a VMA's ended SSH session left", "vma", pt.id, "socket", pt.path)
		}
	case errors.Is(err, errNotConnected):
	case ctx.Err() != nil:
		return
	default:
		state, level, cause = "failing", slog.LevelWarn, err
	}
	p.mu.Lock()
	changed := state != pt.state
	pt.state = state
	p.mu.Unlock()
	if changed {
		p.log.Log(ctx, level, "VMA's API socket", "vma", pt.id, "socket", pt.path, "state", state, "err", cause)
	}
}
