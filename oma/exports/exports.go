// Package exports serves the NBD exports VM disks are written into: one
// supervised nbdkit per job, on a port from a pool, serving one export per
// disk from a directory of links to sparse raw volume files.
//
// nbdkit runs with --exit-with-parent, so it never outlives the OMA; a
// process that dies while its job is active is restarted on the same port.
package exports

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrExhausted is returned by Pick when every port of the pool is taken.
var ErrExhausted = errors.New("no free NBD port")

// Config configures a Manager. The zero value serves ports 10100-10199 on
// 127.0.0.1 with the nbdkit found on PATH.
type Config struct {
	// FirstPort and LastPort bound the port pool, inclusive.
	FirstPort, LastPort int
	// BindAddr is the address nbdkit listens on.
	BindAddr string
	// Nbdkit is the nbdkit binary.
	Nbdkit string
	// ReadyTimeout bounds the wait for a new nbdkit to accept clients; 0 means 10s.
	ReadyTimeout time.Duration
	// Logger receives nbdkit's output and supervision events; nil discards.
	Logger *slog.Logger
}

// Manager runs the nbdkit processes of the jobs. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	servers map[string]*server // by job id

	restarts atomic.Uint64 // nbdkit processes that died and were restarted
}

// Restarts returns how many times an nbdkit died while it served and was
// restarted, since the Manager was made. Debian's nbdkit 1.32 aborts
// (raw_send_socket: Assertion 'sock >= 0' failed) when a client's
// connection dies while it answers; see the README's troubleshooting.
func (m *Manager) Restarts() uint64 { return m.restarts.Load() }

// server is one job's supervised nbdkit.
type server struct {
	port    int
	dir     string
	stop    chan struct{} // closed by Stop
	stopped chan struct{} // closed when supervision has ended
}

// New returns a Manager for cfg.
func New(cfg Config) *Manager {
	if cfg.FirstPort == 0 && cfg.LastPort == 0 {
		cfg.FirstPort, cfg.LastPort = 10100, 10199
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	if cfg.Nbdkit == "" {
		cfg.Nbdkit = "nbdkit"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log, servers: map[string]*server{}}
}

// Pool returns the first and last port of the pool.
func (m *Manager) Pool() (first, last int) { return m.cfg.FirstPort, m.cfg.LastPort }

// Pick returns the lowest port of the pool that is neither leased nor
// taken by another process, or ErrExhausted.
func (m *Manager) Pick(leased map[int]bool) (int, error) {
	return m.PickIn(m.cfg.FirstPort, m.cfg.LastPort, leased)
}

// PickIn returns the lowest port of first-last that is in the pool, neither
// leased nor taken by another process, or ErrExhausted: a VMA's jobs take
// their ports from its share of the pool only.
func (m *Manager) PickIn(first, last int, leased map[int]bool) (int, error) {
	for p := max(first, m.cfg.FirstPort); p <= min(last, m.cfg.LastPort); p++ {
		if leased[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(m.cfg.BindAddr, strconv.Itoa(p)))
		if err != nil {
			continue // another process has it
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("%w: all of %d-%d are leased or in use", ErrExhausted, first, last)
}

// Name returns an export name for prefix with a random 128-bit part
// (32 hex digits, from crypto/rand) appended: nbdkit does not list its
// exports, so only who is told the name can reach the export.
func Name(prefix string) (string, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("export name for %s: %w", prefix, err)
	}
	return prefix + "-" + hex.EncodeToString(secret), nil
}

// Volume is one disk to serve: a raw file of a given size, exported under Name.
type Volume struct {
	Name     string
	Path     string
	Capacity int64
	// Fresh discards what the file held (an initial copy); otherwise an
	// existing file is kept and only resized (an incremental copy).
	Fresh bool
}

// Prepare creates each volume as a sparse file of its exact capacity and
// links it into dir under its export name. It is safe to call again.
func Prepare(dir string, vols []Volume) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create export dir: %w", err)
	}
	for _, v := range vols {
		if err := os.MkdirAll(filepath.Dir(v.Path), 0o700); err != nil {
			return fmt.Errorf("create volume dir: %w", err)
		}
		flags := os.O_RDWR | os.O_CREATE
		if v.Fresh {
			flags |= os.O_TRUNC
		}
		f, err := os.OpenFile(v.Path, flags, 0o600)
		if err != nil {
			return fmt.Errorf("create volume %s: %w", v.Path, err)
		}
		err = f.Truncate(v.Capacity)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("size volume %s to %d bytes: %w", v.Path, v.Capacity, err)
		}
		link := filepath.Join(dir, v.Name)
		abs, err := filepath.Abs(v.Path)
		if err != nil {
			return fmt.Errorf("link volume %s: %w", v.Path, err)
		}
		if cur, err := os.Readlink(link); err == nil && cur == abs {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(abs, link); err != nil {
			return fmt.Errorf("link volume %s: %w", v.Path, err)
		}
	}
	return nil
}

// Serve starts nbdkit for job on port, serving every file in dir as an
// export named after it, and returns once an NBD handshake for one of them
// succeeds. Exports are not listed: only a client that knows a name reaches
// it. The process is restarted if it dies, until Stop.
func (m *Manager) Serve(ctx context.Context, job string, port int, dir string) error {
	m.mu.Lock()
	if s, ok := m.servers[job]; ok {
		m.mu.Unlock()
		if s.port == port && s.dir == dir {
			return nil
		}
		return fmt.Errorf("serve %s: already served on port %d", job, s.port)
	}
	m.mu.Unlock()

	p, err := m.start(ctx, job, port, dir)
	if err != nil {
		return err
	}
	s := &server{port: port, dir: dir, stop: make(chan struct{}), stopped: make(chan struct{})}
	m.mu.Lock()
	m.servers[job] = s
	m.mu.Unlock()
	go m.supervise(job, s, p)
	return nil
}

// proc is a running nbdkit.
type proc struct {
	cmd    *exec.Cmd
	exited chan error // receives Wait's result
	stderr *lockedBuffer
}

// start runs one nbdkit and waits until it serves the job's exports: an
// NBD handshake for one of them must succeed, so a process that merely
// accepts connections on the port does not pass for nbdkit.
func (m *Manager) start(ctx context.Context, job string, port int, dir string) (*proc, error) {
	probeName, err := firstExport(dir)
	if err != nil {
		return nil, fmt.Errorf("start nbdkit for %s: %w", job, err)
	}
	addr := net.JoinHostPort(m.cfg.BindAddr, strconv.Itoa(port))
	// The exportname filter refuses NBD_OPT_LIST: a client must know an
	// export's name, and the file plugin serves only names that are files in
	// dir (never "", never a path). exportname-strict is not used: it needs
	// every name on the command line, where any local user can read it.
	cmd := exec.Command(m.cfg.Nbdkit, "--foreground", "--exit-with-parent",
		"--ipaddr", m.cfg.BindAddr, "--port", strconv.Itoa(port),
		"--filter=exportname", "file", "dir="+dir, "exportname-list=error", "exportdesc=none")
	p := &proc{cmd: cmd, exited: make(chan error, 1), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nbdkit for %s: %w", job, err)
	}
	go func() { p.exited <- cmd.Wait() }()
	deadline := time.Now().Add(m.cfg.ReadyTimeout)
	var probeErr error
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, probeErr = Probe(pctx, addr, probeName)
		cancel()
		if probeErr == nil {
			break
		}
		select {
		case err := <-p.exited:
			return nil, fmt.Errorf("nbdkit for %s on %s exited: %v: %s", job, addr, err, p.stderr.String())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-p.exited
			return nil, fmt.Errorf("start nbdkit for %s: %w", job, ctx.Err())
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.exited
			return nil, fmt.Errorf("nbdkit for %s on %s: not ready after %s: %w", job, addr, m.cfg.ReadyTimeout, probeErr)
		}
	}
	m.log.Info("nbdkit serving", "job", job, "addr", addr, "pid", cmd.Process.Pid)
	return p, nil
}

// firstExport returns the name of one export of dir, to probe.
func firstExport(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read export dir: %w", err)
	}
	if len(entries) == 0 {
		return "", fmt.Errorf("export dir %s is empty", dir)
	}
	return entries[0].Name(), nil
}

// supervise restarts nbdkit when it dies, until s.stop is closed.
func (m *Manager) supervise(job string, s *server, p *proc) {
	defer close(s.stopped)
	delay := 100 * time.Millisecond
	for {
		select {
		case <-s.stop:
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			m.log.Info("nbdkit stopped", "job", job, "port", s.port)
			return
		case err := <-p.exited:
			n := m.restarts.Add(1)
			m.log.Error("nbdkit died; restarting", "job", job, "port", s.port, "err", err, "stderr", p.stderr.String(), "restarts", n)
			for {
				select {
				case <-s.stop:
					return
				case <-time.After(delay):
				}
				np, err := m.start(context.Background(), job, s.port, s.dir)
				if err == nil {
					p, delay = np, 100*time.Millisecond
					break
				}
				delay = min(2*delay, 10*time.Second)
				m.log.Error("restart nbdkit", "job", job, "port", s.port, "err", err, "retry_in", delay)
			}
		}
	}
}

// Stop stops the nbdkit of job and waits until it has exited. Stopping a
// job that is not served does nothing.
func (m *Manager) Stop(job string) {
	m.mu.Lock()
	s, ok := m.servers[job]
	delete(m.servers, job)
	m.mu.Unlock()
	if !ok {
		return
	}
	close(s.stop)
	<-s.stopped
}

// StopAll stops every nbdkit.
func (m *Manager) StopAll() {
	m.mu.Lock()
	jobs := make([]string, 0, len(m.servers))
	for j := range m.servers {
		jobs = append(jobs, j)
	}
	m.mu.Unlock()
	for _, j := range jobs {
		m.Stop(j)
	}
}

// lockedBuffer keeps what a process writes, for error messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		l.b.Reset() // keep the tail only
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(bytes.TrimSpace(l.b.Bytes()))
}
