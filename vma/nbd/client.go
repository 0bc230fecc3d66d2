package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures Dial; the zero value works.
type Config struct {
	// Dial opens the connection; nil uses net.Dialer. The SSH tunnel will replace it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxInFlight bounds requests in flight on the connection; 0 means 64.
	MaxInFlight int
}

// Extent is a stretch of the export and its base:allocation status: Hole when it is not allocated,
// Zero when it reads as zeroes.
type Extent struct {
	Offset, Length int64
	Hole, Zero     bool
}

// ZeroFlags modify WriteZeroes.
type ZeroFlags uint8

const (
	// NoHole asks the server to write the zeroes rather than punch a hole.
	NoHole ZeroFlags = 1 << iota
	// FastZero asks the server to fail with ENOTSUP unless zeroing is faster than writing; without
	// [Client.CanFastZero] WriteZeroes fails so at once.
	FastZero
)

// Client is a connection to one NBD export. All its methods are safe for concurrent use; Close
// releases it.
type Client struct {
	conn net.Conn
	ex   export

	slots chan struct{} // one per request in flight
	wlock chan struct{} // held while a request is being written
	hdr   []byte        // the request being written; under wlock

	mu       sync.Mutex
	pending  map[uint64]*request
	cookie   uint64
	err      error         // why the connection failed; set once
	broken   chan struct{} // closed when err is set
	inFlight int
	peak     int

	closeOnce  sync.Once
	readerDone chan struct{}
	closing    atomic.Bool

	abandonGrace time.Duration // see abandon
}

// defaultAbandonGrace is how long a cancelled read waits for the piece of its data that is arriving
// before the connection is judged stalled and broken.
const defaultAbandonGrace = 5 * time.Second

// Dial connects to the export at uri, nbd://host[:port]/export (port 10809 by default) or
// nbd+unix:///export?socket=PATH, and runs the handshake. ctx bounds the connection and the handshake.
// An export the server refuses is an error naming it; a server that breaks the protocol gives an
// error wrapping ErrProtocol.
func Dial(ctx context.Context, uri string, cfg Config) (*Client, error) {
	network, addr, name, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("nbd dial: MaxInFlight %d is negative", cfg.MaxInFlight)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 64
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd dial %s: %w", uri, err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	ex, err := handshakeConn(ctx, conn, br, name)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("nbd dial %s: %w", uri, err)
	}
	c := &Client{
		conn:       conn,
		ex:         ex,
		slots:      make(chan struct{}, cfg.MaxInFlight),
		wlock:      make(chan struct{}, 1),
		hdr:        make([]byte, 28),
		pending:    make(map[uint64]*request),
		broken:     make(chan struct{}),
		readerDone: make(chan struct{}),

		abandonGrace: defaultAbandonGrace,
	}
	go c.read(newReplyReader(br, ex, c.lookup))
	return c, nil
}

// handshakeConn runs the handshake on conn, cut short by ctx.
func handshakeConn(ctx context.Context, conn net.Conn, r io.Reader, name string) (export, error) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	var fired sync.WaitGroup
	fired.Add(1)
	stop := context.AfterFunc(ctx, func() {
		defer fired.Done()
		conn.SetDeadline(time.Unix(1, 0))
	})
	ex, err := handshake(r, conn, name)
	if !stop() {
		fired.Wait()
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
	}
	conn.SetDeadline(time.Time{})
	return ex, err
}

// parseURI splits an NBD URI into the network, address and export name.
func parseURI(uri string) (network, addr, name string, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", "", "", fmt.Errorf("nbd uri: %w", err)
	}
	name = strings.TrimPrefix(u.Path, "/")
	switch u.Scheme {
	case "nbd":
		if u.Hostname() == "" {
			return "", "", "", fmt.Errorf("nbd uri %q: no host", uri)
		}
		port := u.Port()
		if port == "" {
			port = defaultNBDPort
		}
		return "tcp", net.JoinHostPort(u.Hostname(), port), name, nil
	case "nbd+unix":
		sock := u.Query().Get("socket")
		if sock == "" {
			return "", "", "", fmt.Errorf("nbd uri %q: no socket= parameter", uri)
		}
		if u.Host != "" {
			return "", "", "", fmt.Errorf("nbd uri %q: a unix socket URI has no host", uri)
		}
		return "unix", sock, name, nil
	}
	return "", "", "", fmt.Errorf("nbd uri %q: scheme %q is neither nbd nor nbd+unix", uri, u.Scheme)
}

// Size returns the export's size in bytes.
func (c *Client) Size() int64 {
	return int64(min(c.ex.size, math.MaxInt64))
}

// BlockSize returns the export's block size constraints from NBD_INFO_BLOCK_SIZE, or the protocol's
// defaults 1, 4096 and 32 MiB when the server sent none.
func (c *Client) BlockSize() (min, preferred, max uint32) {
	return c.ex.minBlock, c.ex.prefBlock, c.ex.maxBlock
}

// CanMultiConn reports whether the server allows several connections to the export to be used at once.
func (c *Client) CanMultiConn() bool { return c.ex.flags&tflagMultiConn != 0 }

// CanFastZero reports whether WriteZeroes may be asked for FastZero.
func (c *Client) CanFastZero() bool { return c.ex.flags&tflagFastZero != 0 }

// ReadOnly reports whether the export refuses writes.
func (c *Client) ReadOnly() bool { return c.ex.flags&tflagReadOnly != 0 }

// InFlight returns how many requests are in flight now.
func (c *Client) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// PeakInFlight returns the most requests that were ever in flight at once.
func (c *Client) PeakInFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// ReadAt fills p with the export's bytes at off. Reads longer than the server's maximum block size
// are split. A server error is an *Error; a range beyond the export wraps ErrRange.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := c.checkRange("read", off, int64(len(p))); err != nil {
		return err
	}
	var qs []*request
	for done := 0; done < len(p); {
		n := min(len(p)-done, int(c.pieceMax()))
		qs = append(qs, &request{cmd: cmdRead, off: uint64(off) + uint64(done), length: uint32(n), buf: p[done : done+n]})
		done += n
	}
	return c.do(ctx, qs, func(i int) []byte { return nil })
}

// WriteAt writes p to the export at off, with FUA when fua is set (or followed by a flush when the
// server offers flush but not FUA). Writes longer than the server's maximum block size are split. A
// read-only export gives an error wrapping ErrUnsupported.
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := c.checkWrite("write", off, int64(len(p))); err != nil {
		return err
	}
	var flags uint16
	flushAfter := false
	if fua {
		switch {
		case c.ex.flags&tflagFUA != 0:
			flags = cmdFlagFUA
		case c.ex.flags&tflagFlush != 0:
			flushAfter = true
		default:
			return fmt.Errorf("nbd write at %d: FUA: %w", off, ErrUnsupported)
		}
	}
	var qs []*request
	var offs []int
	for done := 0; done < len(p); {
		n := min(len(p)-done, int(c.pieceMax()))
		qs = append(qs, &request{cmd: cmdWrite, flags: flags, off: uint64(off) + uint64(done), length: uint32(n)})
		offs = append(offs, done)
		done += n
	}
	if err := c.do(ctx, qs, func(i int) []byte { return p[offs[i] : offs[i]+int(qs[i].length)] }); err != nil {
		return err
	}
	if flushAfter {
		return c.Flush(ctx)
	}
	return nil
}

// WriteZeroes makes length bytes at off read as zeroes; with NoHole the server must allocate them,
// with FastZero it must fail with ENOTSUP unless that is faster than writing. An export without write
// zeroes gives an error wrapping ErrUnsupported.
func (c *Client) WriteZeroes(ctx context.Context, off, length int64, flags ZeroFlags) error {
	if err := c.checkWrite("write zeroes", off, length); err != nil {
		return err
	}
	if c.ex.flags&tflagWriteZeroes == 0 {
		return fmt.Errorf("nbd write zeroes at %d: %w", off, ErrUnsupported)
	}
	var f uint16
	if flags&NoHole != 0 {
		f |= cmdFlagNoHole
	}
	if flags&FastZero != 0 {
		if !c.CanFastZero() {
			return &Error{Cmd: "write zeroes", Offset: off, Length: length, Errno: uint32(ENOTSUP), Msg: "fast zero not offered"}
		}
		f |= cmdFlagFastZero
	}
	return c.do(ctx, c.ranges(cmdWriteZeroes, f, off, length), nil)
}

// Trim tells the server that length bytes at off are no longer needed. An export without trim gives
// an error wrapping ErrUnsupported.
func (c *Client) Trim(ctx context.Context, off, length int64) error {
	if err := c.checkWrite("trim", off, length); err != nil {
		return err
	}
	if c.ex.flags&tflagTrim == 0 {
		return fmt.Errorf("nbd trim at %d: %w", off, ErrUnsupported)
	}
	return c.do(ctx, c.ranges(cmdTrim, 0, off, length), nil)
}

// Flush asks the server to persist every write it has answered. An export without flush gives an
// error wrapping ErrUnsupported.
func (c *Client) Flush(ctx context.Context) error {
	if c.ex.flags&tflagFlush == 0 {
		return fmt.Errorf("nbd flush: %w", ErrUnsupported)
	}
	return c.do(ctx, []*request{{cmd: cmdFlush}}, nil)
}

// BlockStatus returns the base:allocation extents covering length bytes at off, in order, adjacent
// extents of the same status merged. It asks again where the server answered for less than asked. An
// export without base:allocation gives an error wrapping ErrUnsupported.
func (c *Client) BlockStatus(ctx context.Context, off, length int64) ([]Extent, error) {
	if err := c.checkRange("block status", off, length); err != nil {
		return nil, err
	}
	if !c.ex.hasMeta {
		return nil, fmt.Errorf("nbd block status at %d: %w", off, ErrUnsupported)
	}
	var out []Extent
	for pos, end := off, off+length; pos < end; {
		q := &request{cmd: cmdBlockStatus, off: uint64(pos), length: uint32(min(end-pos, c.rangeMax()))}
		if err := c.do(ctx, []*request{q}, nil); err != nil {
			return out, err
		}
		for _, e := range q.extents {
			if k := len(out); k > 0 && out[k-1].Hole == e.Hole && out[k-1].Zero == e.Zero {
				out[k-1].Length += e.Length
			} else {
				out = append(out, e)
			}
			pos += e.Length
		}
	}
	return out, nil
}

// Close sends NBD_CMD_DISC and closes the connection. Requests in flight fail with ErrClosed, as do
// later calls. It waits for the reader goroutine to stop.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.setErr(ErrClosed)
		// Requests still in flight (abandoned by their callers) are answered
		// first: nbdkit 1.32 aborts (raw_send_socket: Assertion `sock >= 0')
		// when a connection ends, by NBD_CMD_DISC or by closing it, while it
		// still has replies to send. A server that does not answer within
		// the grace has its connection closed all the same.
		c.awaitReplies(c.abandonGrace)
		// Best effort: a writer stuck on a server that does not read must not hold Close up.
		t := time.NewTimer(time.Second)
		select {
		case c.wlock <- struct{}{}:
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.conn.Write(c.header(cmdDisc, 0, 0, 0, 0))
			<-c.wlock
		case <-t.C:
		}
		t.Stop()
		c.conn.Close()
	})
	<-c.readerDone
	return nil
}

// awaitReplies waits until no request is in flight, the connection fails,
// or grace has passed.
func (c *Client) awaitReplies(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for c.InFlight() > 0 && time.Now().Before(deadline) {
		select {
		case <-c.readerDone:
			return // the connection failed: nothing more comes
		case <-time.After(time.Millisecond):
		}
	}
}

// pieceMax is the largest read or write one request carries.
func (c *Client) pieceMax() uint32 {
	m := min(c.ex.maxBlock, maxPayload)
	if c.ex.minBlock > 1 {
		m -= m % c.ex.minBlock
	}
	return max(m, 1)
}

// rangeMax is the largest range a write zeroes, trim or block status request covers: 2^32-1 rounded
// down to the minimum block size.
func (c *Client) rangeMax() int64 {
	m := int64(math.MaxUint32)
	return m - m%int64(c.ex.minBlock)
}

// ranges splits [off, off+length) into requests of at most rangeMax bytes.
func (c *Client) ranges(cmd, flags uint16, off, length int64) []*request {
	var qs []*request
	for pos, end := off, off+length; pos < end; {
		n := min(end-pos, c.rangeMax())
		qs = append(qs, &request{cmd: cmd, flags: flags, off: uint64(pos), length: uint32(n)})
		pos += n
	}
	return qs
}

func (c *Client) checkRange(cmd string, off, length int64) error {
	if off < 0 || length < 0 || off > c.Size() || length > c.Size()-off {
		return fmt.Errorf("nbd %s at %d (+%d): %w of %d bytes", cmd, off, length, ErrRange, c.Size())
	}
	return nil
}

func (c *Client) checkWrite(cmd string, off, length int64) error {
	if c.ReadOnly() {
		return fmt.Errorf("nbd %s at %d: read-only export: %w", cmd, off, ErrUnsupported)
	}
	return c.checkRange(cmd, off, length)
}

// do sends every request (payload(i) is the data of request i, for writes), then waits for all their
// replies, and returns the first error. If ctx ends, the requests still in flight are abandoned.
func (c *Client) do(ctx context.Context, qs []*request, payload func(i int) []byte) error {
	sent := 0
	var err error
	for i, q := range qs {
		var data []byte
		if payload != nil {
			data = payload(i)
		}
		if err = c.send(ctx, q, data); err != nil {
			break
		}
		sent++
	}
	for _, q := range qs[:sent] {
		if err != nil {
			c.abandon(q)
			continue
		}
		select {
		case <-q.done:
			err = q.err
		case <-ctx.Done():
			c.abandon(q)
			err = fmt.Errorf("nbd %s at %d: %w", cmdName(q.cmd), q.off, ctx.Err())
		}
	}
	return err
}

// abandon stops q's reply from touching the caller's buffer. If the reader is reading into it at
// that moment, abandon waits for the piece to arrive; a server that stalls mid-piece for
// c.abandonGrace has its connection broken, which ends the read at once.
func (c *Client) abandon(q *request) {
	busy := q.abandon()
	if busy == nil {
		return
	}
	t := time.NewTimer(c.abandonGrace)
	defer t.Stop()
	select {
	case <-busy:
	case <-t.C:
		c.breakConn(fmt.Errorf("nbd %s at %d: %w: server stalled mid-reply to an abandoned request",
			cmdName(q.cmd), q.off, ErrProtocol))
		<-busy
	}
}

// send takes a slot, registers q under a new cookie and writes the request. If ctx ends while the
// request is being written, the write may go on for c.abandonGrace (the caller abandons the
// request, whose reply is dropped): breaking the connection with requests in flight makes nbdkit
// 1.32 abort. A request still half written then fails the connection: the stream cannot be mended.
func (c *Client) send(ctx context.Context, q *request, data []byte) error {
	q.done = make(chan struct{})
	wrap := func(err error) error { return fmt.Errorf("nbd %s at %d: %w", cmdName(q.cmd), q.off, err) }
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return wrap(ctx.Err())
	case <-c.broken:
		return wrap(c.cause())
	}
	select {
	case c.wlock <- struct{}{}:
	case <-ctx.Done():
		<-c.slots
		return wrap(ctx.Err())
	case <-c.broken:
		<-c.slots
		return wrap(c.cause())
	}
	defer func() { <-c.wlock }()

	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		<-c.slots
		return wrap(c.err)
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = q
	c.inFlight++
	c.peak = max(c.peak, c.inFlight)
	c.mu.Unlock()

	var fired sync.WaitGroup
	fired.Add(1)
	stop := context.AfterFunc(ctx, func() {
		defer fired.Done()
		c.conn.SetWriteDeadline(time.Now().Add(c.abandonGrace))
	})
	bufs := net.Buffers{c.header(q.cmd, q.flags, cookie, q.off, q.length)}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	_, err := bufs.WriteTo(c.conn)
	if !stop() {
		fired.Wait()
		if err != nil {
			err = fmt.Errorf("abandoned while being sent (%w): %w", ctx.Err(), err)
		}
		c.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		// If the connection broke first (the reader saw why), that is the cause to report.
		c.breakConn(fmt.Errorf("send: %w", err))
		return wrap(c.cause())
	}
	return nil
}

// header fills c.hdr with a request header; the caller holds wlock.
func (c *Client) header(cmd, flags uint16, cookie, off uint64, length uint32) []byte {
	h := c.hdr[:0]
	h = binary.BigEndian.AppendUint32(h, requestMagic)
	h = binary.BigEndian.AppendUint16(h, flags)
	h = binary.BigEndian.AppendUint16(h, cmd)
	h = binary.BigEndian.AppendUint64(h, cookie)
	h = binary.BigEndian.AppendUint64(h, off)
	h = binary.BigEndian.AppendUint32(h, length)
	return h
}

// lookup finds the request in flight with cookie.
func (c *Client) lookup(cookie uint64) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[cookie]
}

// read is the reader goroutine: it hands each reply to its request until the connection fails.
func (c *Client) read(rr *replyReader) {
	defer close(c.readerDone)
	for {
		q, cookie, done, err := rr.next()
		if err != nil {
			if c.closing.Load() {
				err = ErrClosed
			} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("connection closed by server: %w", err)
			}
			c.drain(err)
			c.conn.Close()
			return
		}
		if !done {
			continue
		}
		c.mu.Lock()
		delete(c.pending, cookie)
		c.inFlight--
		c.mu.Unlock()
		q.finish()
		close(q.done)
		<-c.slots
	}
}

// breakConn records why the connection failed (the first cause wins) and closes it, so that the
// reader stops and fails every request in flight, and any writer stops.
func (c *Client) breakConn(cause error) {
	c.setErr(cause)
	c.conn.Close()
}

// setErr records cause unless an earlier one was.
func (c *Client) setErr(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = cause
		close(c.broken)
	}
}

// drain fails every request in flight with the connection's cause (cause, if none was recorded). Only
// the reader calls it, as it stops: the reader alone completes requests.
func (c *Client) drain(cause error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = cause
		close(c.broken)
	}
	cause = c.err
	failed := c.pending
	c.pending = make(map[uint64]*request)
	c.inFlight = 0
	c.mu.Unlock()
	for _, q := range failed {
		q.setErr(fmt.Errorf("nbd %s at %d (+%d): %w", cmdName(q.cmd), q.off, q.length, cause))
		close(q.done)
		<-c.slots
	}
}

// cause returns why the connection failed.
func (c *Client) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
