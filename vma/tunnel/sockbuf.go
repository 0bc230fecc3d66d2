package tunnel

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLinkRate is the link rate the socket buffer check assumes when
// Config.LinkRate is 0: 1 Gbit/s, in bytes per second.
const DefaultLinkRate = 125_000_000

// dialer is the dialer of the tunnel's TCP connections: with
// Config.SocketBuffer, it sets SO_SNDBUF and SO_RCVBUF before connecting
// (so that the window scale fits them). Without, the kernel sizes the
// buffers itself up to net.ipv4.tcp_wmem's and tcp_rmem's maximum, growing
// them with the congestion window; setting them turns that off, and the
// kernel caps them at net.core.wmem_max and rmem_max.
func (t *Tunnel) dialer() *net.Dialer {
	d := &net.Dialer{}
	if n := t.cfg.SocketBuffer; n > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n)
				if serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
				}
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("socket buffers of %d bytes: %w", n, serr)
			}
			return nil
		}
	}
	return d
}

// checkBuffers logs once, on the first connection whose round trip is
// known, whether the send buffer can hold what the link carries in two
// round trips (2 × Config.LinkRate × minRTT): TCP sends at most a send
// buffer per round trip, so a smaller one caps the whole tunnel below the
// link's rate. It names the sysctl to raise (README: Long links).
func (t *Tunnel) checkBuffers(sock syscall.Conn, minRTT time.Duration) {
	t.measured.checked.Do(func() {
		rate := t.cfg.LinkRate
		if rate <= 0 {
			rate = DefaultLinkRate
		}
		want := int64(2 * float64(rate) * minRTT.Seconds())
		log := t.log.With("min_rtt", minRTT, "link_rate_bytes", rate, "want_bytes", want)
		if t.cfg.SocketBuffer > 0 {
			sndbuf, err := sockOpt(sock, unix.SOL_SOCKET, unix.SO_SNDBUF)
			if err != nil {
				log.Warn("socket buffers", "err", err)
				return
			}
			// The kernel doubles what was asked, capped at wmem_max.
			log = log.With("asked_bytes", t.cfg.SocketBuffer, "so_sndbuf", sndbuf)
			if int64(sndbuf) < want {
				wmemMax, _ := sysctlInt("net/core/wmem_max", 0)
				log.Warn("tunnel socket buffer smaller than two round trips of the link: the tunnel runs below the link's rate; raise -tunnel-sockbuf and net.core.wmem_max/rmem_max on both ends (README: Long links)",
					"net.core.wmem_max", wmemMax)
				return
			}
			log.Info("tunnel socket buffers set (kernel autotuning off)")
			return
		}
		wmem, err := sysctlInt("net/ipv4/tcp_wmem", 2)
		if err != nil {
			log.Warn("socket buffer check", "err", err)
			return
		}
		log = log.With("net.ipv4.tcp_wmem_max", wmem)
		if int64(wmem) < want {
			log.Warn("tunnel socket buffers too small: net.ipv4.tcp_wmem's maximum is smaller than two round trips of the link: the tunnel runs below the link's rate; raise it here and net.ipv4.tcp_rmem's on the OMA (README: Long links, scripts/sysctl-godwit.conf)")
			return
		}
		log.Info("tunnel socket buffers autotuned, up to two round trips of the link or more")
	})
}

// sockOpt reads an integer socket option of sock.
func sockOpt(sock syscall.Conn, level, opt int) (int, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return 0, err
	}
	return v, serr
}

// sysctlInt reads field i (counted from 0) of /proc/sys/<name>.
func sysctlInt(name string, i int) (int, error) {
	data, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	f := strings.Fields(string(data))
	if i >= len(f) {
		return 0, fmt.Errorf("sysctl %s: %q has no field %d", name, data, i)
	}
	v, err := strconv.Atoi(f[i])
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return v, nil
}
