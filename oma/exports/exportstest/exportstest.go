// Package exportstest helps tests that serve NBD exports.
package exportstest

import (
	"net"
	"strconv"
	"testing"
)

// FreePorts finds n consecutive free loopback ports, starting from one the
// kernel picked, so that parallel tests get different ranges.
func FreePorts(tb testing.TB, n int) (first, last int) {
	tb.Helper()
	for range 100 {
		l0, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		base := l0.Addr().(*net.TCPAddr).Port
		l0.Close()
		ok := base+n < 65536
		for p := base; ok && p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, base + n - 1
		}
	}
	tb.Fatal("no free port range")
	return 0, 0
}
