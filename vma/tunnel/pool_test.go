package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/copier/export"
	"github.com/godwit/godwit/vma/nbd"
	"github.com/godwit/godwit/vma/nbd/nbdtest"
	"github.com/godwit/godwit/vma/tunnel"
)

// TestDataConnectionsCarryNBD: a tunnel of three SSH connections to the
// same sshd, with the same key: the bus's channel is on the primary, a
// copy's four NBD channels are spread over the two data connections (two
// each), its bytes cross them, not the primary, and what lands in the
// export is what was read.
func TestDataConnectionsCarryNBD(t *testing.T) {
	const size = 16 << 20
	natsAddr := startNATS(t)
	srv := nbdtest.StartTCP(t, "memory", fmt.Sprintf("size=%d", size))
	r := newRig(t, natsAddr, srv.Addr)
	cfg := r.config(t)
	cfg.Connections, cfg.PrimaryAddrs = 3, []string{natsAddr}
	// No drop is tested here: a busy machine may answer a keepalive later
	// than the rig's 300 ms while the copy floods the connection.
	cfg.Keepalive = 10 * time.Second
	tun := run(t, cfg)
	checkFor(t, 10*time.Second, func() error {
		s := tun.State()
		if len(s.Connections) != 3 {
			return fmt.Errorf("%d connections, want 3: %+v", len(s.Connections), s.Connections)
		}
		for i, c := range s.Connections {
			if !c.Connected || c.Primary != (i == 0) {
				return fmt.Errorf("connection %d = %+v, want up (primary: %v)", i, c, i == 0)
			}
		}
		return nil
	})
	s := tun.State()
	ports := map[string]bool{}
	for _, c := range s.Connections {
		ports[c.LocalAddr] = true
	}
	if len(ports) != 3 {
		t.Errorf("local addresses %v: want three TCP connections", ports)
	}

	nc, err := nats.Connect("nats://"+natsAddr, nats.SetCustomDialer(tunnel.Dialer{Tunnel: tun, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("nats connect through the tunnel: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := nc.Flush(); err != nil {
		t.Fatalf("nats flush: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dst, err := export.Open(ctx, srv.URI, 4, nbd.Config{Dial: tun.DialContext})
	if err != nil {
		t.Fatalf("open %s through the tunnel: %v", srv.URI, err)
	}
	defer dst.Close()
	if n := dst.Connections(); n != 4 {
		t.Fatalf("export opened with %d NBD connections, want 4 (multi-conn)", n)
	}
	channels := func(s tunnel.State) []int {
		var out []int
		for _, c := range s.Connections {
			out = append(out, c.Channels)
		}
		return out
	}
	if got := channels(tun.State()); fmt.Sprint(got) != "[1 2 2]" {
		t.Errorf("channels per connection = %v, want [1 2 2]: the bus's on the primary, the NBD ones spread over the data connections", got)
	}
	before := tun.State().Connections[0].BytesOut
	res, err := copier.Copy(ctx, dst, pattern(size), []copier.Area{{Offset: 0, Length: size}}, copier.Config{Verify: true})
	if err != nil || !res.Verified {
		t.Fatalf("copy over the data connections: verified %v, %v", res.Verified, err)
	}
	s = tun.State()
	if sent := s.Connections[0].BytesOut - before; sent > size/8 {
		t.Errorf("the primary sent %d bytes during the copy of %d: the copy went over it", sent, size)
	}
	// Both data connections carry part of the copy, together all of it;
	// how evenly depends on which channel the copier's writers find free
	// first, which a busy machine skews.
	var data int64
	for i, c := range s.Connections[1:] {
		if c.BytesOut < size/64 {
			t.Errorf("data connection %d sent %d bytes, want a share of the %d copied", i+1, c.BytesOut, size)
		}
		data += c.BytesOut
	}
	if data < size {
		t.Errorf("the data connections sent %d bytes, less than the %d copied", data, size)
	}
	dst.Close()
	checkFor(t, 10*time.Second, func() error {
		if got := channels(tun.State()); fmt.Sprint(got) != "[1 0 0]" {
			return fmt.Errorf("channels per connection after the copy = %v, want [1 0 0]", got)
		}
		return nil
	})
	if _, err := nc.Request("nobody", nil, 100*time.Millisecond); err != nats.ErrNoResponders {
		t.Errorf("the bus through the primary after the copy: %v, want no responders", err)
	}

	// Byte-exact: read the export directly, not through the tunnel.
	direct, err := nbd.Dial(ctx, srv.URI, nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	got, want := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(got)) {
		if err := direct.ReadAt(ctx, got, off); err != nil {
			t.Fatalf("read back at %d: %v", off, err)
		}
		pattern(size).ReadAt(ctx, want, off)
		if !bytes.Equal(got, want) {
			t.Fatalf("the export differs from the source in the MiB at %d", off)
		}
	}
}

// TestDataConnectionLossKeepsThePrimary: killing the sshd process of one
// data connection breaks only the channels on it. The other data
// connection's channel and the bus on the primary go on, the lost
// connection is made again, and the primary never dropped: no outage.
func TestDataConnectionLossKeepsThePrimary(t *testing.T) {
	natsAddr := startNATS(t)
	r := newRig(t, natsAddr)
	cfg := r.config(t)
	cfg.Connections, cfg.PrimaryAddrs = 3, []string{natsAddr}
	var outages atomic.Int32
	cfg.OnRestore = func(tunnel.Outage) { outages.Add(1) }
	tun := run(t, cfg)
	checkFor(t, 10*time.Second, func() error {
		for i, c := range tun.State().Connections {
			if !c.Connected {
				return fmt.Errorf("connection %d down", i)
			}
		}
		if n := len(tun.State().Connections); n != 3 {
			return fmt.Errorf("%d connections, want 3", n)
		}
		return nil
	})
	nc, err := nats.Connect("nats://"+natsAddr, nats.SetCustomDialer(tunnel.Dialer{Tunnel: tun, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("nats connect through the tunnel: %v", err)
	}
	t.Cleanup(nc.Close)
	first, second := dial(t, tun, r.echo), dial(t, tun, r.echo)
	roundTrip(t, first, "first")
	roundTrip(t, second, "second")
	s := tun.State()
	if s.Connections[1].Channels != 1 || s.Connections[2].Channels != 1 {
		t.Fatalf("connections %+v: want one echo channel on each data connection", s.Connections)
	}
	if n, err := r.sshd.KillConnection(s.Connections[1].LocalAddr); err != nil || n == 0 {
		t.Fatalf("kill the sshd of data connection 1 (%s): %d killed, %v", s.Connections[1].LocalAddr, n, err)
	}
	first.SetReadDeadline(time.Now().Add(testkit.Wait(t)))
	if _, err := bufio.NewReader(first).ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from the killed connection's channel = %v, want it closed", err)
	}
	roundTrip(t, second, "still here")
	if _, err := nc.Request("nobody", nil, time.Second); err != nats.ErrNoResponders {
		t.Errorf("the bus after a data connection was lost: %v, want no responders (the request went through)", err)
	}
	checkFor(t, 10*time.Second, func() error {
		c := tun.State().Connections[1]
		if !c.Connected || c.Reconnects != 1 {
			return fmt.Errorf("data connection 1 = %+v, want made again", c)
		}
		return nil
	})
	if s := tun.State(); s.Reconnects != 0 || s.Connections[0].Reconnects != 0 || outages.Load() != 0 {
		t.Errorf("the primary reconnected %d times, %d outages: want none", s.Reconnects, outages.Load())
	}
	roundTrip(t, dial(t, tun, r.echo), "again")
}
