package tunnel_test

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// TestLinkMeasured: with traffic through the real sshd, State shows the
// link's round trips (TCP's, its least, the keepalive's), TCP's congestion
// window and delivery rate, and bytes per second both ways; MinRTT tells
// the least round trip; once the connection is down, the rates are zero
// and MinRTT keeps the link's last.
func TestLinkMeasured(t *testing.T) {
	r := newRig(t)
	tun := run(t, r.config(t))
	c := dial(t, tun, r.echo)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // echo traffic until the test ends
		buf := make([]byte, 256<<10)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
		}
	}()
	checkFor(t, 10*time.Second, func() error {
		s := tun.State()
		if s.RTT <= 0 || s.MinRTT <= 0 || s.KeepaliveRTT <= 0 || s.SndCwnd <= 0 || s.DeliveryRate <= 0 ||
			s.BytesInPerSec <= 0 || s.BytesOutPerSec <= 0 || s.NoDelay == "" {
			return fmt.Errorf("State() = %+v, want round trips, cwnd, delivery rate, bytes/s both ways, the session command's state", s)
		}
		if got := tun.MinRTT(); got != s.MinRTT || got > s.RTT+s.RTT {
			return fmt.Errorf("MinRTT() = %s, want State().MinRTT %s, about RTT %s", got, s.MinRTT, s.RTT)
		}
		return nil
	})
	r.sshd.Stop()
	checkFor(t, 10*time.Second, func() error {
		if s := tun.State(); s.Connected || s.BytesInPerSec != 0 || s.BytesOutPerSec != 0 || s.RTT != 0 {
			return fmt.Errorf("State() = %+v with sshd stopped, want down, no rates, no RTT", s)
		}
		return nil
	})
	if tun.MinRTT() <= 0 {
		t.Error("MinRTT() = 0 once the connection dropped, want the last one's")
	}
}
