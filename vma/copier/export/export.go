// Package export makes an NBD export a source or a destination of the
// copier, over one connection or, when the server offers multi-conn,
// several: requests go to the connections in turn, so Depth requests are
// in flight across them.
package export

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/nbd"
)

// Endpoint is an NBD export opened for copying. It is safe for concurrent
// use; Close closes its connections.
type Endpoint struct {
	conns []*nbd.Client
	next  atomic.Uint64
}

var (
	_ copier.Source      = (*Endpoint)(nil)
	_ copier.Extents     = (*Endpoint)(nil)
	_ copier.Destination = (*Endpoint)(nil)
)

// Open connects to the export at uri (nbd:// or nbd+unix://) with up to
// conns connections: one when the server does not offer multi-conn or
// conns < 2. The connections are opened at once, not one after the other:
// over a long link each handshake takes several round trips. When the
// first says the server does not offer multi-conn, the others are closed.
func Open(ctx context.Context, uri string, conns int, cfg nbd.Config) (e *Endpoint, err error) {
	conns = max(conns, 1)
	clients := make([]*nbd.Client, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { clients[i], errs[i] = nbd.Dial(ctx, uri, cfg) })
	}
	wg.Wait()
	e = &Endpoint{}
	for i, c := range clients {
		if c != nil {
			e.conns = append(e.conns, c)
		}
		if errs[i] != nil && err == nil {
			err = errs[i]
			if i > 0 {
				err = fmt.Errorf("connection %d of %d: %w", i+1, conns, err)
			}
		}
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	if !e.conns[0].CanMultiConn() {
		for _, c := range e.conns[1:] {
			c.Close()
		}
		e.conns = e.conns[:1]
	}
	return e, nil
}

// conn picks the connection for the next request: the one with the fewest
// requests in flight, taking turns among equals. A connection that moves
// slower than the others (a channel waiting for its window) gets fewer.
func (e *Endpoint) conn() *nbd.Client {
	n := uint64(len(e.conns))
	first := (e.next.Add(1) - 1) % n
	best, least := e.conns[first], -1
	for i := range n {
		c := e.conns[(first+i)%n]
		if f := c.InFlight(); least < 0 || f < least {
			best, least = c, f
		}
	}
	return best
}

// Connections returns how many connections the endpoint uses.
func (e *Endpoint) Connections() int { return len(e.conns) }

// Size returns the export's size in bytes.
func (e *Endpoint) Size() int64 { return e.conns[0].Size() }

// ReadAt reads len(p) bytes at off.
func (e *Endpoint) ReadAt(ctx context.Context, p []byte, off int64) error {
	return e.conn().ReadAt(ctx, p, off)
}

// Extents returns the base:allocation status of length bytes at off: Zero
// where the server says the bytes read as zeroes (a hole alone promises
// nothing). An export without base:allocation is one data extent.
func (e *Endpoint) Extents(ctx context.Context, off, length int64) ([]copier.Extent, error) {
	exts, err := e.conn().BlockStatus(ctx, off, length)
	if errors.Is(err, nbd.ErrUnsupported) {
		return []copier.Extent{{Offset: off, Length: length}}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]copier.Extent, len(exts))
	for i, x := range exts {
		out[i] = copier.Extent{Offset: x.Offset, Length: x.Length, Zero: x.Zero}
	}
	return out, nil
}

// WriteAt writes p at off.
func (e *Endpoint) WriteAt(ctx context.Context, p []byte, off int64) error {
	return e.conn().WriteAt(ctx, p, off, false)
}

// WriteZeroes makes length bytes at off read as zeroes, punching a hole
// where the server can.
func (e *Endpoint) WriteZeroes(ctx context.Context, off, length int64) error {
	return e.conn().WriteZeroes(ctx, off, length, 0)
}

// Flush asks every connection to flush and returns once all answered: what
// each acknowledged is then on stable storage.
func (e *Endpoint) Flush(ctx context.Context) error {
	errs := make(chan error, len(e.conns))
	for _, c := range e.conns {
		go func() { errs <- c.Flush(ctx) }()
	}
	var first error
	for range e.conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// PeakInFlight returns the most requests that were in flight at once on
// each connection, added up.
func (e *Endpoint) PeakInFlight() int {
	n := 0
	for _, c := range e.conns {
		n += c.PeakInFlight()
	}
	return n
}

// Close closes every connection, all at once: each waits for its
// server's end, a round trip through the tunnel.
func (e *Endpoint) Close() error {
	errs := make([]error, len(e.conns))
	var wg sync.WaitGroup
	for i, c := range e.conns {
		wg.Go(func() { errs[i] = c.Close() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
