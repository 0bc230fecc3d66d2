package testkit

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePorts finds n consecutive free loopback ports below the kernel's
// ephemeral range, from a random start, so that parallel tests get
// different ranges and no outgoing connection of another test takes one of
// them as its local port between the check and the listen (as the NBD
// pool of a real OMA lies below that range too).
func FreePorts(tb testing.TB, n int) (first, last int) {
	tb.Helper()
	low, _ := ephemeralRange()
	for range 1000 {
		base := 10000 + rand.IntN(low-10000-n)
		ok := true
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

// ephemeralRange returns the kernel's range of local ports for outgoing
// connections (Linux's ip_local_port_range), or Linux's default.
func ephemeralRange() (low, high int) {
	low, high = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return low, high
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l <= 11000 {
		return low, high
	}
	return l, h
}
