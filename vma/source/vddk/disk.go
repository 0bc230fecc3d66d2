package vddk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/nbd"
)

// passwordFD is the descriptor nbdkit reads the password from: the first
// of exec.Cmd.ExtraFiles.
const passwordFD = 3

// waitDelay bounds how long reaping nbdkit waits for its output pipe to
// close once it has exited.
const waitDelay = 500 * time.Millisecond

// exitGrace is how long a read that failed on a broken connection waits
// for nbdkit's exit, so that its error can say why nbdkit died.
const exitGrace = 2 * time.Second

// Disk is a VM's disk served by a supervised nbdkit and read over NBD. It
// is a copier.Source with copier.Extents, safe for concurrent use. Close
// releases it.
type Disk struct {
	cmd    *exec.Cmd
	dir    string // private directory holding the socket
	stderr *tail
	log    *slog.Logger
	grace  time.Duration

	ep      atomic.Pointer[export.Endpoint]
	exited  chan struct{} // closed once nbdkit has exited and been reaped
	exitErr error         // cmd.Wait's result; read only after exited is closed
	closing atomic.Bool

	closeOnce sync.Once
	closeErr  error

	pipeIno uint64 // inode of the password pipe, 0 without one; for tests
}

var (
	_ copier.Source  = (*Disk)(nil)
	_ copier.Extents = (*Disk)(nil)
)

// Open checks that the vddk plugin is installed (see Check; its error
// wraps ErrNotInstalled and comes back before anything is started),
// validates cfg (ErrConfig), starts nbdkit on a Unix socket in a private
// temporary directory and returns once an NBD handshake with it succeeds.
// ctx bounds the check and the start (cfg.ReadyTimeout when it has no
// deadline), not the Disk's life. If nbdkit exits or refuses the
// handshake, the error carries the tail of its stderr. A failed Open
// leaves no process, goroutine or file behind.
func Open(ctx context.Context, cfg Config) (*Disk, error) {
	cfg = cfg.withDefaults()
	if err := Check(ctx, cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ReadyTimeout)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "godwit-vddk-") // mode 0700; short, for the socket path
	if err != nil {
		return nil, fmt.Errorf("open vddk disk: socket dir: %w", err)
	}
	d, err := start(cfg, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.connect(ctx, cfg.Connections); err != nil {
		return nil, d.abort(ctx, err)
	}
	d.log.Info("nbdkit serving", "plugin", cfg.plugin(), "file", cfg.File, "pid", d.cmd.Process.Pid)
	return d, nil
}

// start runs nbdkit serving cfg on a socket in dir, with the password in
// an inherited pipe that is filled and closed for writing first.
func start(cfg Config, dir string) (*Disk, error) {
	bin, err := exec.LookPath(cfg.Nbdkit)
	if err != nil {
		return nil, fmt.Errorf("start nbdkit: %w", err)
	}
	sock := filepath.Join(dir, "nbdkit.sock")
	cmd := exec.Command(bin, Args(cfg, sock, passwordFD)...)
	d := &Disk{
		cmd:    cmd,
		dir:    dir,
		stderr: &tail{},
		log:    cfg.Logger,
		grace:  cfg.StopGrace,
		exited: make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = d.stderr, d.stderr
	// A child of nbdkit that outlives it must not hold Wait on the
	// output pipe.
	cmd.WaitDelay = waitDelay
	var pipe *os.File
	if !cfg.Password.Empty() {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("start nbdkit: password pipe: %w", err)
		}
		// The password fits the pipe's buffer (validate bounds it), so the
		// write does not wait for nbdkit; closing w gives nbdkit EOF.
		_, err = w.Write([]byte(cfg.Password.Reveal() + "\n"))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("start nbdkit: write password pipe: %w", err)
		}
		pipe = r
		cmd.ExtraFiles = []*os.File{r}
		if fi, err := r.Stat(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				d.pipeIno = st.Ino
			}
		}
	}
	err = cmd.Start()
	if pipe != nil {
		pipe.Close() // nbdkit holds its own copy
	}
	if err != nil {
		return nil, fmt.Errorf("start nbdkit: %w", err)
	}
	go d.wait()
	return d, nil
}

// wait reaps nbdkit. If it dies while the Disk is open, the NBD connection
// is closed at once so reads in flight fail instead of hanging.
func (d *Disk) wait() {
	err := d.cmd.Wait()
	d.exitErr = err
	close(d.exited)
	if ep := d.ep.Load(); ep != nil && !d.closing.Load() {
		d.log.Error("nbdkit exited", "pid", d.cmd.Process.Pid, "err", err, "stderr", d.stderr.String())
		ep.Close()
	}
}

// connect dials the socket until an NBD handshake succeeds. Only "no
// socket yet" and "connection refused" are retried: a handshake that
// nbdkit refuses (VDDK could not log in or open the file) fails at once.
func (d *Disk) connect(ctx context.Context, conns int) error {
	sock := filepath.Join(d.dir, "nbdkit.sock")
	uri := "nbd+unix:///?socket=" + sock
	for {
		ep, err := export.Open(ctx, uri, conns, nbd.Config{})
		if err == nil {
			d.ep.Store(ep)
			select {
			case <-d.exited: // died just now: wait may not have seen ep
				ep.Close()
				return fmt.Errorf("start nbdkit: %w", ErrExited)
			default:
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("start nbdkit: not serving: %w", err)
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("start nbdkit: %w", err)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-d.exited:
			t.Stop()
			return fmt.Errorf("start nbdkit: %w", ErrExited)
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// abort ends a failed Open: it stops nbdkit, removes the socket dir and
// returns err with, if nbdkit had died by itself, its exit status, and
// the tail of its stderr (complete once nbdkit is reaped).
func (d *Disk) abort(ctx context.Context, err error) error {
	if ctx.Err() == nil && brokenConn(err) {
		t := time.NewTimer(exitGrace)
		select {
		case <-d.exited:
		case <-t.C:
		}
		t.Stop()
	}
	died := false
	select {
	case <-d.exited:
		died = true
	default:
	}
	d.Close()
	if !died {
		return fmt.Errorf("%w%s", err, d.stderrSuffix())
	}
	if errors.Is(err, ErrExited) {
		return fmt.Errorf("%w (%v)%s", err, d.exitErr, d.stderrSuffix())
	}
	return fmt.Errorf("%w: %w (%v)%s", err, ErrExited, d.exitErr, d.stderrSuffix())
}

// errTail bounds the stderr an error carries.
const errTail = 2048

// stderrSuffix returns "; nbdkit stderr: TAIL" with at most errTail bytes
// of nbdkit's last output, or "" if nbdkit wrote nothing.
func (d *Disk) stderrSuffix() string {
	s := d.stderr.String()
	if s == "" {
		return ""
	}
	if len(s) > errTail {
		s = s[len(s)-errTail:]
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
		s = "..." + s
	}
	return "; nbdkit stderr: " + s
}

// explain adds to err, a failed request, why nbdkit exited and the tail
// of its stderr, unless the Disk is being closed. A connection that broke
// (EOF, reset, or closed because nbdkit was reaped) waits up to exitGrace
// for the exit to be seen; an error nbdkit answered with, or the caller's
// cancellation, does not wait.
func (d *Disk) explain(ctx context.Context, err error) error {
	if d.closing.Load() {
		return err // closed by us: nbdkit's exit is no news
	}
	if ctx.Err() == nil && brokenConn(err) {
		t := time.NewTimer(exitGrace)
		defer t.Stop()
		select {
		case <-d.exited:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	select {
	case <-d.exited:
	default:
		return err
	}
	if errors.Is(err, ErrExited) {
		return fmt.Errorf("%w (%v)%s", err, d.exitErr, d.stderrSuffix())
	}
	return fmt.Errorf("%w: %w (%v)%s", err, ErrExited, d.exitErr, d.stderrSuffix())
}

// brokenConn reports whether err says the connection to nbdkit broke,
// as it does when nbdkit dies.
func brokenConn(err error) bool {
	return errors.Is(err, ErrExited) || errors.Is(err, nbd.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Size returns the disk's size in bytes.
func (d *Disk) Size() int64 { return d.ep.Load().Size() }

// ReadAt reads len(p) bytes at off. If nbdkit has died, the error wraps
// ErrExited and carries its stderr.
func (d *Disk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.ep.Load().ReadAt(ctx, p, off); err != nil {
		return d.explain(ctx, fmt.Errorf("vddk read at %d (+%d): %w", off, len(p), err))
	}
	return nil
}

// Extents returns which of length bytes at off read as zeroes, from NBD
// base:allocation (see export.Endpoint.Extents). If nbdkit has died, the
// error wraps ErrExited and carries its stderr.
func (d *Disk) Extents(ctx context.Context, off, length int64) ([]copier.Extent, error) {
	exts, err := d.ep.Load().Extents(ctx, off, length)
	if err != nil {
		return nil, d.explain(ctx, fmt.Errorf("vddk extents at %d (+%d): %w", off, length, err))
	}
	return exts, nil
}

// Close disconnects, stops nbdkit (SIGTERM, then SIGKILL after
// Config.StopGrace), waits until it has exited and removes the socket
// directory. It returns the error of the removal; calling it again returns
// the same.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		if ep := d.ep.Load(); ep != nil {
			ep.Close()
		}
		d.stop()
		if err := os.RemoveAll(d.dir); err != nil {
			d.closeErr = fmt.Errorf("close vddk disk: %w", err)
		}
	})
	return d.closeErr
}

// stop ends nbdkit and waits for it to be reaped.
func (d *Disk) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(d.grace)
	defer t.Stop()
	select {
	case <-d.exited:
		d.log.Info("nbdkit stopped", "pid", d.cmd.Process.Pid)
	case <-t.C:
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.log.Warn("nbdkit killed after SIGTERM grace", "pid", d.cmd.Process.Pid, "grace", d.grace)
	}
}
