package tunnel

import (
	"net"
	"sync/atomic"
)

// countConn counts the bytes through the SSH connection's TCP connection.
type countConn struct {
	net.Conn
	in, out *atomic.Int64
}

// Read counts what it reads.
func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

// Write counts what it writes.
func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
