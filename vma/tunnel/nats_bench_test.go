package tunnel_test

import (
	"bytes"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/vma/tunnel"
)

// BenchmarkNATSRoundTrip measures the NATS request/reply round trip with
// 64-byte payloads, one request at a time, from a requester reaching an
// embedded nats-server three ways: directly, through the VMA's in-process
// SSH tunnel, and through OpenSSH's `ssh -N -L` to the same real sshd with
// the same key and cipher (aes128-gcm@openssh.com). The responder is
// another connection made directly to the server, so the path measured is
// requester → (tunnel) → server → responder → server → (tunnel) →
// requester. Each iteration times 2000 sequential requests per path, the
// paths in a rotating order. The metrics are the p50 and p99 of all the
// round trips of each path in µs, and the ratios of the p50s tunnel /
// direct and tunnel / ssh -L (below 1 against ssh -L: the tunnel is
// faster).
//
//	go test -run '^$' -bench NATSRoundTrip -benchtime 3x ./vma/tunnel
func BenchmarkNATSRoundTrip(b *testing.B) {
	const (
		rounds  = 2000
		subject = "rtt"
		cipher  = "aes128-gcm@openssh.com"
	)
	addr := startNATS(b)
	r := newRig(b, addr)
	cfg := r.config(b)
	cfg.Ciphers, cfg.Logger = []string{cipher}, slog.New(slog.DiscardHandler)
	tun := run(b, cfg)
	peerAddr := sshForward(b, r, cipher, addr)

	connect := func(url string, opts ...nats.Option) *nats.Conn {
		b.Helper()
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			b.Fatalf("nats connect %s: %v", url, err)
		}
		b.Cleanup(nc.Close)
		return nc
	}
	responder := connect("nats://" + addr)
	if _, err := responder.Subscribe(subject, func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		b.Fatal(err)
	}
	paths := []struct {
		name string
		nc   *nats.Conn
	}{
		{"direct", connect("nats://" + addr)},
		{"tunnel", connect("nats://"+addr, nats.SetCustomDialer(tunnel.Dialer{Tunnel: tun, Timeout: 10 * time.Second}))},
		{"ssh-L", connect("nats://" + peerAddr)},
	}

	payload := bytes.Repeat([]byte("r"), 64)
	batch := func(nc *nats.Conn, into []float64) []float64 {
		for range rounds {
			start := time.Now()
			msg, err := nc.Request(subject, payload, 10*time.Second)
			d := time.Since(start)
			if err != nil {
				b.Fatalf("request: %v", err)
			}
			if !bytes.Equal(msg.Data, payload) {
				b.Fatalf("reply = %q, want %q", msg.Data, payload)
			}
			into = append(into, float64(d.Nanoseconds())/1e3)
		}
		return into
	}
	// Warm up: the reply subscription, the connections' buffers, the SSH windows.
	for _, p := range paths {
		batch(p.nc, nil)
	}

	samples := make([][]float64, len(paths))
	for i := 0; b.Loop(); i++ {
		for k := range paths {
			j := (i + k) % len(paths)
			samples[j] = batch(paths[j].nc, samples[j])
		}
	}
	p50 := make([]float64, len(paths))
	for j, p := range paths {
		p50[j] = median(samples[j])
		b.ReportMetric(p50[j], p.name+"-p50-us")
		b.ReportMetric(quantile(samples[j], 0.99), p.name+"-p99-us")
	}
	b.ReportMetric(p50[1]/p50[0], "tunnel/direct")
	b.ReportMetric(p50[1]/p50[2], "tunnel/ssh-L")
}

// quantile returns the q-quantile of xs by the nearest rank.
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q * float64(len(s)))
	return s[min(i, len(s)-1)]
}
