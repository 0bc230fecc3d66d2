package tunnel_test

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
)

// TestSocketBufferCheck: once the round trip is known, the tunnel logs
// once whether its send buffer holds two round trips of the link: the
// sysctl to raise when tcp_wmem's maximum is too small for the link, the
// SO_SNDBUF the kernel gave when Config.SocketBuffer set it, nothing when
// autotuning suffices.
func TestSocketBufferCheck(t *testing.T) {
	wmemMax := sysctl(t, "net/core/wmem_max", 0)
	tests := []struct {
		name     string
		sockbuf  int
		linkRate int64
		want     []string // in the log
	}{
		{"autotuning, a link no buffer holds", 0, 1 << 50, []string{"level=WARN", "net.ipv4.tcp_wmem's maximum is smaller"}},
		{"autotuning, a slow link", 0, 1000, []string{"level=INFO", "tunnel socket buffers autotuned"}},
		{"set, a slow link", 1 << 20, 1000, []string{"level=INFO", "tunnel socket buffers set (kernel autotuning off)",
			"so_sndbuf=" + strconv.Itoa(2*min(1<<20, wmemMax))}},
		{"set, a link no buffer holds", 1 << 20, 1 << 50, []string{"level=WARN", "tunnel socket buffer smaller than two round trips"}},
	}
	r := newRig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testkit.Buffer{}
			cfg := r.config(t)
			cfg.RemoteListen, cfg.SocketBuffer, cfg.LinkRate = "", tt.sockbuf, tt.linkRate
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			tun := run(t, cfg)
			checkFor(t, 10*time.Second, func() error {
				if !strings.Contains(logs.String(), "buffer") {
					return fmt.Errorf("State() = %+v, no word on the socket buffers yet", tun.State())
				}
				return nil
			})
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "buffer") {
					line = l
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("log line %q, want %q in it", line, w)
				}
			}
			if n := strings.Count(logs.String(), "buffer"); n != 1 {
				t.Errorf("log:\n%s\nspeaks of the buffers %d times, want once", logs, n)
			}
		})
	}
}

// sysctl reads field i of /proc/sys/name.
func sysctl(t *testing.T, name string, i int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Skipf("no sysctl %s: %v", name, err)
	}
	v, err := strconv.Atoi(strings.Fields(string(data))[i])
	if err != nil {
		t.Fatalf("sysctl %s = %q: %v", name, data, err)
	}
	return v
}
