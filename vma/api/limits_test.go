package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/httpserver/httpservertest"
	"github.com/godwit/godwit/vma/appliance"
)

// TestTrickledBodyIsCut: a real TCP client sending its body a byte a
// second to the VMA's API is answered 408 once the body timeout has passed,
// and its connection closed.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *appliance.Config) { c.API.HTTP.BodyTimeout = time.Second })
	body := `{"vcenter": "` + strings.Repeat("x", 50) + `"}`
	resp, sent := httpservertest.PostTrickled(t, strings.TrimPrefix(s.url, "http://"), "/api/v1/discover", "", body, time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("answer = %d, close %v; want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	if n := <-sent; n >= len(body) {
		t.Errorf("the whole %d-byte body went through", n)
	}
}
