package httpserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// DefaultBodyTimeout is how long a request body may take to arrive when
// Config.BodyTimeout is zero.
const DefaultBodyTimeout = 30 * time.Second

// ErrBodyTimeout is wrapped by the error a handler's read of a request
// body returns when the body did not arrive within the body timeout. It
// wraps os.ErrDeadlineExceeded too.
var ErrBodyTimeout = fmt.Errorf("request body not received in time: %w", os.ErrDeadlineExceeded)

// limitBody gives a request's body d to arrive, counted from the end of
// its headers: a client trickling its body is cut when d has passed, its
// read failing with an error wrapping ErrBodyTimeout. The deadline is
// lifted once the body has been read to its end, so a handler may then
// take as long as it needs (the server's read deadline would otherwise
// cancel the request's context).
//
// An answer written before the body was read to its end (a refusal: 401,
// 403, 413, 415...) says Connection: close, and the connection closes
// after it: the server then never waits for the rest of a body nobody
// reads.
func limitBody(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(d)) // not every connection has deadlines
		b := &deadlineBody{ReadCloser: r.Body, rc: rc}
		r.Body = b
		cw := &closeUnread{ResponseWriter: w, body: b}
		next.ServeHTTP(cw, r)
		if !cw.wroteHeader {
			cw.WriteHeader(http.StatusOK)
		}
		if !b.done.Load() {
			// The server reads what is left of a body (up to 256 KiB)
			// after the handler, closing the connection or not: end that
			// read at once.
			_ = rc.SetReadDeadline(time.Now())
		}
	})
}

// deadlineBody is a request body read under a deadline.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done atomic.Bool // read to its end
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		if !b.done.Swap(true) {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w (%v)", ErrBodyTimeout, err)
	}
	return n, err
}

// closeUnread closes the connection after an answer written before the
// request's body was read to its end.
type closeUnread struct {
	http.ResponseWriter
	body        *deadlineBody
	wroteHeader bool
}

func (w *closeUnread) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		if !w.body.done.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeUnread) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *closeUnread) Unwrap() http.ResponseWriter { return w.ResponseWriter }
