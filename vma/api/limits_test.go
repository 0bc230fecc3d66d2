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

	"github.com/godwit/godwit/vma/appliance"
)

// TestTrickledBodyIsCut: a real TCP client sending its body a byte a
// second to the VMA's API is answered 408 once the body timeout has passed,
// and its connection closed.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *appliance.Config) { c.API.HTTP.BodyTimeout = time.Second })
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"vcenter": "` + strings.Repeat("x", 50) + `"}`
	_, _ = io.WriteString(c, "POST /api/v1/discover HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n")
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
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("answer = %d, close %v; want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the 408: read = %v, want EOF or a reset (the server closes)", err)
	}
	if n := <-sent; n >= len(body) {
		t.Errorf("the whole %d-byte body went through", n)
	}
}
