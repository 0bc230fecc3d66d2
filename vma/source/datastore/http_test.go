package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
)

// The simulator's /folder endpoint is net/http's file server, which always
// answers well. These tests put Disk in front of servers that do not, and
// count its connections.

// stubDisk returns a Disk of size bytes read from a TLS server running h
// (through a soap client, as Open makes it), and the server.
func stubDisk(t *testing.T, size int64, h http.HandlerFunc) (*Disk, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return stubDiskFor(t, srv, size), srv
}

func stubDiskFor(t *testing.T, srv *httptest.Server, size int64) *Disk {
	t.Helper()
	u, err := soap.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDisk(soap.NewClient(u, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.url, d.file, d.size = srv.URL+"/folder/stub-flat.vmdk", "[ds] stub-flat.vmdk", size
	return d
}

// serve answers ranges of data correctly.
func serve(data []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

func TestIgnoredRange(t *testing.T) {
	t.Parallel()
	data := []byte(strings.Repeat("0123456789", 100))
	d, _ := stubDisk(t, int64(len(data)), func(w http.ResponseWriter, r *http.Request) {
		w.Write(data) // 200, the whole file
	})
	got := make([]byte, 10)
	if err := d.ReadAt(t.Context(), got, 0); err != nil || string(got) != "0123456789" {
		t.Errorf("ReadAt(10 bytes at 0) from a 200 = %q, %v, want the file's first bytes", got, err)
	}
	err := d.ReadAt(t.Context(), got, 500)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusOK || !strings.Contains(err.Error(), "ignored the Range") ||
		!strings.Contains(err.Error(), "offset 500") {
		t.Errorf("ReadAt(10 bytes at 500) from a 200 = %v, want a StatusError saying the range was ignored", err)
	}
}

func TestBadAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    http.HandlerFunc
		msg  string
		err  error
	}{
		{name: "wrong Content-Range", msg: `Content-Range "bytes 0-99/1000"`, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-99/1000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(make([]byte, 100))
		}},
		{name: "no Content-Range", msg: `Content-Range ""`, h: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
		}},
		{name: "short body", msg: "got 50 of 100 bytes", err: io.ErrUnexpectedEOF, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 100-199/1000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(make([]byte, 50))
			w.(http.Flusher).Flush() // no Content-Length: chunked, ends early
		}},
		{name: "short body with Content-Length", msg: "got 50 of 100 bytes", err: io.ErrUnexpectedEOF, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 100-199/1000")
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(make([]byte, 50)) // the server then closes the connection
		}},
		{name: "Content-Length not the range", msg: "Content-Length 150, want 100", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 100-199/1000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(make([]byte, 150))
		}},
		{name: "long body", msg: "longer than", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 100-199/1000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(make([]byte, 100))
			w.(http.Flusher).Flush() // chunked: no Content-Length to check first
			w.Write(make([]byte, 50))
		}},
		{name: "server error", msg: "HTTP 503 Service Unavailable", h: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, _ := stubDisk(t, 1000, tt.h)
			err := d.ReadAt(t.Context(), make([]byte, 100), 100)
			if err == nil || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "[ds] stub-flat.vmdk at offset 100") ||
				(tt.err != nil && !errors.Is(err, tt.err)) {
				t.Errorf("ReadAt = %v, want an error naming the file and offset, wrapping %v, containing %q", err, tt.err, tt.msg)
			}
		})
	}
}

// TestCancelMidBody cancels a read whose server sent half the body and then
// stalls: ReadAt must return (the test would hang otherwise).
func TestCancelMidBody(t *testing.T) {
	t.Parallel()
	sent := make(chan struct{})
	d, _ := stubDisk(t, 1<<20, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-65535/1048576")
		w.Header().Set("Content-Length", "65536")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(make([]byte, 32768))
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-sent
		cancel()
	}()
	err := d.ReadAt(ctx, make([]byte, 65536), 0)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "offset 0") {
		t.Errorf("ReadAt cancelled mid-body = %v, want context.Canceled naming the offset", err)
	}
}

// TestConnectionReuse keeps copier.DefaultDepth reads in flight, round
// after round: Disk's transport must keep their connections instead of
// opening new ones (net/http keeps 2 idle per host by default).
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("godwit!\n"), 1<<15) // 256 KiB
	srv := httptest.NewUnstartedServer(serve(data))
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	d := stubDiskFor(t, srv, int64(len(data)))

	const depth, rounds = 16, 10
	for range rounds {
		var wg sync.WaitGroup
		for i := range depth {
			wg.Go(func() {
				off := int64(i) * 16 << 10
				p := make([]byte, 16<<10)
				if err := d.ReadAt(t.Context(), p, off); err != nil || !bytes.Equal(p, data[off:off+16<<10]) {
					t.Errorf("ReadAt(16 KiB at %d) = %v, or wrong data", off, err)
				}
			})
		}
		wg.Wait()
	}
	if n := conns.Load(); n > 2*depth {
		t.Errorf("%d rounds of %d reads opened %d connections, want at most %d", rounds, depth, n, 2*depth)
	} else {
		t.Logf("%d rounds of %d reads opened %d connections", rounds, depth, n)
	}
}

// TestErrorsHoldNoCookie checks that the session cookie sent with every
// request appears in no error.
func TestErrorsHoldNoCookie(t *testing.T) {
	t.Parallel()
	const secret = "cookie-value-that-must-not-leak"
	var got atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(soap.SessionCookieName); err == nil {
			got.Store(c.Value)
		}
		http.Error(w, fmt.Sprintf("no access with %s", secret), http.StatusForbidden)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u, _ := soap.ParseURL(srv.URL)
	sc := soap.NewClient(u, true)
	sc.Jar.SetCookies(u, []*http.Cookie{{Name: soap.SessionCookieName, Value: secret, Path: "/"}})
	d, err := newDisk(sc)
	if err != nil {
		t.Fatal(err)
	}
	d.url, d.file, d.size = srv.URL+"/folder/x-flat.vmdk", "[ds] x-flat.vmdk", 100
	err = d.ReadAt(t.Context(), make([]byte, 10), 0)
	if got.Load() != secret {
		t.Errorf("the request carried cookie %v, want the session cookie", got.Load())
	}
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "403") {
		t.Errorf("ReadAt = %v, want a 403 error without the cookie", err)
	}
}
