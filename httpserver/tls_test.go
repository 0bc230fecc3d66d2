package httpserver_test

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/httpserver/httpservertest"
)

// TestHTTP2BodiesAndRefusals: over TLS (HTTP/2), a body read to its end is
// served, and a refusal before the body is answered.
func TestHTTP2BodiesAndRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := httpservertest.SelfSigned(t, certFile, keyFile)
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		decodeHandler(w, r)
	})
	addr := serve(t, refuse, httpserver.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, BodyTimeout: 5 * time.Second})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	for path, want := range map[string]int{"/ok": http.StatusNoContent, "/refuse": http.StatusUnauthorized} {
		for range 2 { // the second on the same connection, when it was kept
			req, _ := http.NewRequest(http.MethodPost, "https://"+addr+path, strings.NewReader(`{"a": 1}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want || resp.ProtoMajor != 2 {
				t.Errorf("POST %s = %d over %s, want %d over HTTP/2", path, resp.StatusCode, resp.Proto, want)
			}
		}
	}
}
