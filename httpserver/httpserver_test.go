package httpserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/problem"
)

// echo answers 200 with how many body bytes it could read and whether
// the read hit the body limit.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	var maxErr *http.MaxBytesError
	_ = json.NewEncoder(w).Encode(map[string]any{"read": n, "limited": errors.As(err, &maxErr)})
})

func TestGuard(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.Guard([]string{"https://ui.example.com", "http://localhost:3000/"}, echo))
	t.Cleanup(srv.Close)
	json := "application/json"
	tests := []struct {
		name        string
		method      string
		header      map[string]string
		body        string
		status      int
		field       string
		allowOrigin string
	}{
		{"get, no origin", "GET", nil, "", 200, "", ""},
		{"delete, no content type", "DELETE", nil, "", 200, "", ""},
		{"post, empty body, no content type", "POST", nil, "", 200, "", ""},
		{"json", "POST", map[string]string{"Content-Type": json}, "{}", 200, "", ""},
		{"json utf-8", "POST", map[string]string{"Content-Type": "application/json; charset=UTF-8"}, "{}", 200, "", ""},
		{"json suffix", "POST", map[string]string{"Content-Type": "application/merge-patch+json"}, "{}", 200, "", ""},
		{"json latin-1", "POST", map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, "{}", 415, "Content-Type", ""},
		{"form", "POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "{}", 415, "Content-Type", ""},
		{"multipart", "POST", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "{}", 415, "Content-Type", ""},
		{"text", "POST", map[string]string{"Content-Type": "text/plain"}, "{}", 415, "Content-Type", ""},
		{"no content type", "POST", nil, "{}", 415, "Content-Type", ""},
		{"bare +json", "POST", map[string]string{"Content-Type": "application/+json"}, "{}", 415, "Content-Type", ""},
		{"other origin", "POST", map[string]string{"Origin": "https://evil.example", "Content-Type": json}, "{}", 403, "Origin", ""},
		{"other origin get", "GET", map[string]string{"Origin": "https://evil.example"}, "", 403, "Origin", ""},
		{"null origin", "GET", map[string]string{"Origin": "null"}, "", 403, "Origin", ""},
		{"own origin, other scheme", "GET", map[string]string{"Origin": "https://" + strings.TrimPrefix(srv.URL, "http://")}, "", 403, "Origin", ""},
		{"own origin", "POST", map[string]string{"Origin": srv.URL, "Content-Type": json}, "{}", 200, "", ""},
		{"cross-site fetch", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403, "Sec-Fetch-Site", ""},
		{"same-origin fetch", "GET", map[string]string{"Sec-Fetch-Site": "same-origin"}, "", 200, "", ""},
		{"none fetch", "GET", map[string]string{"Sec-Fetch-Site": "none"}, "", 200, "", ""},
		{"allowed origin", "GET", map[string]string{"Origin": "https://UI.example.com", "Sec-Fetch-Site": "cross-site"}, "", 200, "", "https://UI.example.com"},
		{"allowed origin, slash in list", "GET", map[string]string{"Origin": "http://localhost:3000"}, "", 200, "", "http://localhost:3000"},
		{"allowed origin, form", "POST", map[string]string{"Origin": "https://ui.example.com", "Content-Type": "text/plain"}, "{}", 415, "Content-Type", "https://ui.example.com"},
		{"allowed origin preflight", "OPTIONS", map[string]string{"Origin": "https://ui.example.com", "Access-Control-Request-Method": "POST"}, "", 204, "", "https://ui.example.com"},
		{"other origin preflight", "OPTIONS", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "", 403, "Origin", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(tt.method, srv.URL+"/x", body)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p problem.Problem
			if tt.status >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ct)
				}
				_ = jsonDecode(resp.Body, &p)
			}
			if resp.StatusCode != tt.status || p.Field != tt.field {
				t.Errorf("%s %v = %d %+v, want %d naming %q", tt.method, tt.header, resp.StatusCode, p, tt.status, tt.field)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.allowOrigin)
			}
		})
	}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// TestGuardBoundsEveryBody: a handler that reads the body itself, not
// through problem.Decode, still stops at problem.MaxBody.
func TestGuardBoundsEveryBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.Guard(nil, echo))
	t.Cleanup(srv.Close)
	for _, size := range []int{problem.MaxBody, problem.MaxBody + 1, 4 * problem.MaxBody} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(strings.Repeat(" ", size)))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Read    int64
			Limited bool
		}
		_ = jsonDecode(resp.Body, &got)
		resp.Body.Close()
		if got.Read > problem.MaxBody || got.Limited != (size > problem.MaxBody) {
			t.Errorf("a %d-byte body: read %d, limited %v", size, got.Read, got.Limited)
		}
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc  ", "abc", true},
		{"  Bearer abc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", c.header)
		if tok, ok := httpserver.BearerToken(r); tok != c.token || ok != c.ok {
			t.Errorf("BearerToken(%q) = %q, %v, want %q, %v", c.header, tok, ok, c.token, c.ok)
		}
	}
}

// TestServeClosesIdleConnections: a keep-alive connection left idle is
// closed after IdleTimeout.
func TestServeClosesIdleConnections(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserver.Serve(ctx, l, echo, httpserver.Config{IdleTimeout: 100 * time.Millisecond}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first response: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: read = %v, want EOF (closed by the server)", err)
	}
}

func TestServeRefusesHalfTLS(t *testing.T) {
	t.Parallel()
	for _, cfg := range []httpserver.Config{{TLSCertFile: "cert.pem"}, {TLSKeyFile: "key.pem"}, {IdleTimeout: -1}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := httpserver.Serve(context.Background(), l, echo, cfg); err == nil {
			t.Errorf("Serve(%+v) = nil, want an error", cfg)
		}
		l.Close()
	}
	if err := (httpserver.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

// TestGuardRefusesRebinding: on a loopback listener, a request naming
// another host (a page whose name was re-pointed at 127.0.0.1) is 403 even
// from its "own" origin; loopback names pass.
func TestGuardRefusesRebinding(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(httpserver.Guard(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	defer hs.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(hs.URL, "http://"))
	for _, tt := range []struct {
		host   string
		status int
	}{
		{"evil.example:" + port, http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
		{"10.0.0.5:" + port, http.StatusForbidden},
		{"127.0.0.1:" + port, http.StatusNoContent},
		{"localhost:" + port, http.StatusNoContent},
		{"LOCALHOST", http.StatusNoContent},
		{"[::1]:" + port, http.StatusNoContent},
		{"oma.localhost:" + port, http.StatusNoContent},
	} {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/api/v1/discover", strings.NewReader(`{}`))
		req.Host = tt.host
		req.Header.Set("Origin", "http://"+tt.host)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("Host %s = %d, want %d", tt.host, resp.StatusCode, tt.status)
		}
	}
}
