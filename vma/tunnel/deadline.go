package tunnel

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineConn gives an SSH channel's connection, which has no deadlines of its own, the coarse
// kind: when a read or write deadline passes, the connection is closed and what was blocked on
// it returns os.ErrDeadlineExceeded. Unlike a TCP connection it cannot be used after that; a
// deadline cleared or moved before it passes changes nothing. That is what the NBD handshake
// and nats.go's connect need: a bound on a step, cleared once the step is done.
type deadlineConn struct {
	net.Conn
	mu      sync.Mutex
	timers  [2]*time.Timer // read, write
	expired atomic.Bool
	closed  sync.Once
	onClose func() // called once, by the first Close; nil: nothing
}

var _ net.Conn = (*deadlineConn)(nil)

const (
	readTimer = iota
	writeTimer
)

// Read reads from the channel; os.ErrDeadlineExceeded once a deadline has passed.
func (c *deadlineConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.expired.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// Write writes to the channel; os.ErrDeadlineExceeded once a deadline has passed.
func (c *deadlineConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && c.expired.Load() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// Close stops the timers and closes the channel.
func (c *deadlineConn) Close() error {
	c.mu.Lock()
	for i, tm := range c.timers {
		if tm != nil {
			tm.Stop()
			c.timers[i] = nil
		}
	}
	c.mu.Unlock()
	if c.onClose != nil {
		c.closed.Do(c.onClose)
	}
	return c.Conn.Close()
}

// SetDeadline sets both deadlines; see deadlineConn.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.set(readTimer, t)
	c.set(writeTimer, t)
	return nil
}

// SetReadDeadline closes the connection at t unless cleared or moved before; zero clears it.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.set(readTimer, t)
	return nil
}

// SetWriteDeadline closes the connection at t unless cleared or moved before; zero clears it.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.set(writeTimer, t)
	return nil
}

// set replaces timer i with one that expires the connection at t.
func (c *deadlineConn) set(i int, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timers[i] != nil {
		c.timers[i].Stop()
		c.timers[i] = nil
	}
	if t.IsZero() {
		return
	}
	c.timers[i] = time.AfterFunc(time.Until(t), c.expire)
}

// expire closes the connection for a passed deadline.
func (c *deadlineConn) expire() {
	c.expired.Store(true)
	c.Conn.Close()
}
