package httpserver_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/httpserver/httpservertest"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/testkit"
)

// serve runs Serve with cfg on a loopback port until the test ends and
// returns the address.
func serve(t *testing.T, h http.Handler, cfg httpserver.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserver.Serve(ctx, l, h, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return l.Addr().String()
}

// decodeHandler decodes a JSON body as the APIs do and answers 204, or
// the problem.
var decodeHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := problem.Decode(w, r, &v); err != nil {
		var pe *problem.Error
		errors.As(err, &pe)
		problem.Write(w, pe.Status, pe.Field, pe.Detail)
		return
	}
	w.WriteHeader(http.StatusNoContent)
})

// TestSlowBodyIsCut: a real TCP client trickling its body a byte a second
// is answered 408 and its connection closed once the body timeout has
// passed, long before its body would be complete.
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	addr := serve(t, decodeHandler, httpserver.Config{BodyTimeout: time.Second})
	body := `{"name": "` + strings.Repeat("x", 100) + `"}`
	start := time.Now()
	resp, sent := httpservertest.PostTrickled(t, addr, "/api/v1/tokens", "", body, time.Second)
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("answer = %d, Connection: close %v; want 408, close", resp.StatusCode, resp.Close)
	}
	if took < time.Second {
		t.Errorf("answered after %s, before the body timeout", took)
	}
	if n := <-sent; n >= len(body) {
		t.Errorf("the whole body (%d bytes) went through: nothing was cut", n)
	}
}

// TestRefusalClosesWithoutReadingTheBody: an answer written before the body
// was read (a 401) says Connection: close and the connection closes at
// once, without waiting for a body nobody reads; an answer after the whole
// body keeps the connection.
func TestRefusalClosesWithoutReadingTheBody(t *testing.T) {
	t.Parallel()
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			problem.Write(w, http.StatusUnauthorized, "Authorization", "missing bearer token")
			return
		}
		decodeHandler(w, r)
	})
	addr := serve(t, refuse, httpserver.Config{BodyTimeout: time.Hour})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	resp := httpservertest.ReadAnswer(t, c, bufio.NewReader(c))
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Errorf("answer = %d, Connection: close %v; want 401, close", resp.StatusCode, resp.Close)
	}

	// A request whose body was read keeps its connection.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/x", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Close {
		t.Errorf("a read body: %d, close %v; want 204, kept", resp.StatusCode, resp.Close)
	}
}

// TestBodyTimeoutEndsWithTheBody: once its body is read, a handler may run
// longer than the body timeout; its context is not cancelled.
func TestBodyTimeoutEndsWithTheBody(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			http.Error(w, "cancelled: "+context.Cause(r.Context()).Error(), http.StatusInternalServerError)
		case <-time.After(3 * timeout):
			w.WriteHeader(http.StatusNoContent)
		}
	})
	addr := serve(t, slow, httpserver.Config{BodyTimeout: timeout})
	for _, body := range []string{`{}`, ""} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/x", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("body %q: %d %s, want 204", body, resp.StatusCode, msg)
		}
	}
}

// TestMaxConns: connections over the cap are answered 503 and closed;
// once one of the held connections closes, a new one is served.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	addr := serve(t, echo, httpserver.Config{MaxConns: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	get := func(c net.Conn, br *bufio.Reader) (*http.Response, error) {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		return resp, err
	}
	var held []net.Conn
	for range 2 { // kept alive: each holds a slot
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp, err := get(c, bufio.NewReader(c)); err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v %v", resp, err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	resp, err := get(c, br)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("third connection: %v %v, want 503 problem+json", resp, err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("refused connection: read = %v, want EOF", err)
	}
	if !strings.Contains(logs.String(), "too many connections") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	held[0].Close()
	served := false
	for deadline := time.Now().Add(time.Minute); !served && time.Now().Before(deadline); {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := get(c, bufio.NewReader(c)); err == nil && resp.StatusCode == 200 {
			served = true
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !served {
		t.Error("no connection served after a held one closed")
	}
}

// TestAccessLogNamesTheToken: the access log carries the name a handler
// gave with SetToken, never the secret.
func TestAccessLogNamesTheToken(t *testing.T) {
	t.Parallel()
	var logs testkit.Buffer
	h := httpserver.LogRequests(slog.New(slog.NewTextHandler(&logs, nil)), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpserver.SetToken(r, "ops")
		w.WriteHeader(http.StatusNoContent)
	}))
	r, _ := http.NewRequest(http.MethodGet, "/api/v1/vms", nil)
	r.Header.Set("Authorization", "Bearer gwt_secret")
	h.ServeHTTP(discardWriter{}, r)
	if got := logs.String(); !strings.Contains(got, "token=ops") || strings.Contains(got, "gwt_secret") {
		t.Errorf("access log %q: want token=ops and no secret", got)
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
