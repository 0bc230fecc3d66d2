package api_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
		c, err := net.Dial("tcp", strings.TrimPrefix(o.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "POST /api/v1/tokens HTTP/1.1\r\nHost: localhost\r\n"+tt.auth+
			"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		sent := make(chan int, 1)
		go func() {
			n := 0
			for ; n < len(body); n++ {
				if _, err := c.Write([]byte{body[n]}); err != nil {
					break
				}
				time.Sleep(time.Second)
			}
			sent <- n
		}()
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tt.status || !resp.Close {
			t.Errorf("answer = %d, close %v; want %d and Connection: close", resp.StatusCode, resp.Close, tt.status)
		}
		// Closed: EOF, or a reset when the server closed with the
		// client's latest bytes unread.
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("after a %d: read = %v, want EOF or a reset (the server closes)", tt.status, err)
		}
		if n := <-sent; n >= len(body) {
			t.Errorf("the whole %d-byte body went through", n)
		}
	}
}
