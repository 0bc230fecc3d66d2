package tunnel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SampleInterval is how often the tunnel reads its TCP connection's
// TCP_INFO and its byte counters for State.
const SampleInterval = time.Second

// measures is what the tunnel measures of its link on the primary
// connection, for State and MinRTT.
type measures struct {
	checked sync.Once // checkBuffers ran

	mu        sync.Mutex
	rtt       time.Duration // smoothed, from TCP_INFO
	minRTT    time.Duration // the least seen on the current (or last) connection
	keepalive time.Duration // the last keepalive's round trip
	delivery  float64       // bytes/s, TCP's delivery rate estimate
	cwnd      int           // segments
	sndbuf    float64       // share of the last interval's busy time limited by the send buffer
	rwnd      float64       // ... by the OMA's receive window
	inRate    float64       // bytes/s read, all connections, smoothed
	outRate   float64       // bytes/s written
}

// setKeepalive records the round trip of a keepalive.
func (l *measures) setKeepalive(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keepalive = d
}

// fill copies the measurements into s.
func (l *measures) fill(s *State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.RTT, s.MinRTT, s.KeepaliveRTT = l.rtt, l.minRTT, l.keepalive
	s.DeliveryRate, s.SndCwnd = l.delivery, l.cwnd
	s.SndbufLimited, s.RwndLimited = l.sndbuf, l.rwnd
	s.BytesInPerSec, s.BytesOutPerSec = l.inRate, l.outRate
}

// MinRTT returns the least round-trip time TCP measured on the tunnel's
// connection to the OMA (the current one, or the last while it is down), or
// 0 before one was measured. Queueing behind the tunnel's own traffic does
// not raise it: it is the link's.
func (t *Tunnel) MinRTT() time.Duration {
	t.measured.mu.Lock()
	defer t.measured.mu.Unlock()
	return t.measured.minRTT
}

// sample reads the primary connection's TCP_INFO and the tunnel's byte counters every
// SampleInterval, from at once until ctx ends, for State and MinRTT; it
// logs once when the socket buffers are too small for the link
// (checkBuffers).
func (t *Tunnel) sample(ctx context.Context) {
	sock, _ := t.primary.tcp().(syscall.Conn)
	tick := time.NewTicker(SampleInterval)
	defer tick.Stop()
	var prev *unix.TCPInfo
	at, in, out := time.Now(), t.bytesIn.Load(), t.bytesOut.Load()
	for first := true; ; first = false {
		var info *unix.TCPInfo
		if sock != nil {
			var err error
			if info, err = tcpInfo(sock); err != nil && first {
				t.log.Debug("tcp_info of the ssh connection", "err", err)
			}
		}
		now, nowIn, nowOut := time.Now(), t.bytesIn.Load(), t.bytesOut.Load()
		t.measured.mu.Lock()
		if info != nil {
			t.measured.rtt = time.Duration(info.Rtt) * time.Microsecond
			if info.Min_rtt > 0 {
				t.measured.minRTT = time.Duration(info.Min_rtt) * time.Microsecond
			}
			t.measured.delivery, t.measured.cwnd = float64(info.Delivery_rate), int(info.Snd_cwnd)
			t.measured.sndbuf, t.measured.rwnd = 0, 0
			if prev != nil && info.Busy_time > prev.Busy_time {
				busy := float64(info.Busy_time - prev.Busy_time)
				t.measured.sndbuf = min(float64(info.Sndbuf_limited-prev.Sndbuf_limited)/busy, 1)
				t.measured.rwnd = min(float64(info.Rwnd_limited-prev.Rwnd_limited)/busy, 1)
			}
			prev = info
		}
		if dt := now.Sub(at).Seconds(); !first && dt > 0 {
			// Half the weight on the last interval: a few seconds' memory.
			t.measured.inRate = (t.measured.inRate + float64(nowIn-in)/dt) / 2
			t.measured.outRate = (t.measured.outRate + float64(nowOut-out)/dt) / 2
		}
		minRTT := t.measured.minRTT
		t.measured.mu.Unlock()
		at, in, out = now, nowIn, nowOut
		if sock != nil && minRTT > 0 {
			t.checkBuffers(sock, minRTT)
		}
		select {
		case <-ctx.Done():
			t.measured.mu.Lock()
			t.measured.rtt, t.measured.delivery, t.measured.cwnd = 0, 0, 0
			t.measured.sndbuf, t.measured.rwnd, t.measured.inRate, t.measured.outRate = 0, 0, 0, 0
			t.measured.mu.Unlock()
			return
		case <-tick.C:
		}
	}
}

// tcpInfo reads the TCP_INFO of sock.
func tcpInfo(sock syscall.Conn) (*unix.TCPInfo, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tcp_info: %w", err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return nil, fmt.Errorf("tcp_info: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("tcp_info: %w", serr)
	}
	if info == nil {
		return nil, errors.New("tcp_info: none")
	}
	return info, nil
}
