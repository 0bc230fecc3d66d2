package httpserver

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is how many connections a server holds at once when
// Config.MaxConns is zero.
const DefaultMaxConns = 256

// refusedAnswer is what a plain-HTTP connection over the cap is told.
const refusedAnswer = `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections: try again later"}` + "\n"

// limitListener accepts at most cap(slots) connections at once. One more
// is answered 503 (plain HTTP) or closed at once (TLS, whose handshake
// has not happened yet), so a client holding connections open can delay
// no one more than the cap allows, and the others learn why.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	plainHTTP bool
	log       *slog.Logger
	lastLog   atomic.Int64 // unix nanoseconds of the last "refused" warning
}

func newLimitListener(l net.Listener, max int, plainHTTP bool, log *slog.Logger) *limitListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &limitListener{Listener: l, slots: make(chan struct{}, max), plainHTTP: plainHTTP, log: log}
}

// Accept returns the next connection within the cap, refusing the ones
// over it meanwhile.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			go l.refuse(c)
		}
	}
}

// refuse answers a connection over the cap and closes it. A warning is
// logged at most every 10 seconds.
func (l *limitListener) refuse(c net.Conn) {
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last >= int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.log.Warn("http connection refused: too many connections", "max_conns", cap(l.slots), "remote", c.RemoteAddr().String())
	}
	defer c.Close()
	if !l.plainHTTP {
		return
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err := io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\nConnection: close\r\n"+
		"Content-Length: "+strconv.Itoa(len(refusedAnswer))+"\r\n\r\n"+refusedAnswer)
	if err != nil {
		return
	}
	// Half-close, then read what the client sent until it closes too (or
	// the deadline): closing with its request unread would reset the
	// connection, and the client could lose the answer.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// limitConn frees its slot when closed.
type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite half-closes the connection, as the server does before it
// closes one after an answer (so a client still sending gets the answer,
// not a reset).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
