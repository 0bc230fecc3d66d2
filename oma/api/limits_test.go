package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/httpserver/httpservertest"
	"github.com/godwit/godwit/oma/appliance"
)

// TestTrickledBodyIsCut: a real TCP client sending its body a byte a
// second to the OMA's API is answered 408 once the body timeout has
// passed and its connection closed; one without a token is answered 401
// and closed without the server waiting for its body.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1, func(c *appliance.Config) { c.API.HTTP.BodyTimeout = time.Second })
	body := `{"name": "` + strings.Repeat("x", 50) + `"}`
	for _, tt := range []struct {
		auth   string
		status int
	}{
		{"Authorization: Bearer " + o.token + "\r\n", http.StatusRequestTimeout},
		{"", http.StatusUnauthorized},
	} {
		resp, sent := httpservertest.PostTrickled(t, strings.TrimPrefix(o.url, "http://"), "/api/v1/tokens", tt.auth, body, time.Second)
		if resp.StatusCode != tt.status || !resp.Close {
			t.Errorf("answer = %d, close %v; want %d and Connection: close", resp.StatusCode, resp.Close, tt.status)
		}
		if n := <-sent; n >= len(body) {
			t.Errorf("the whole %d-byte body went through", n)
		}
	}
}
