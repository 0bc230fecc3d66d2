package bus_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

// benchProgress is a progress event of a job with four disks (about 600
// bytes as an envelope).
func benchProgress(seq uint64) *events.Progress {
	p := progress("vma-bench", "repl-vm-143233-1754407216", seq)
	for k := int32(2001); k <= 2003; k++ {
		p.Disks = append(p.Disks, events.DiskProgress{Key: k, BytesTotal: 1 << 40, BytesDone: 1 << 39})
	}
	return p
}

// natsBench runs `nats bench js pub sync` on srv as an admin, publishing n
// copies of payload to subj (stored by stream), each with a Nats-Msg-Id
// like bus sets, and returns its messages per second and mean latency.
func natsBench(b *testing.B, srv *bus.Server, admin bustest.User, subj, stream string, payload []byte, n int) (msgsPerSec, avgMicros float64) {
	b.Helper()
	bin, err := exec.LookPath("nats")
	if err != nil {
		b.Fatalf("the nats CLI is not on PATH (make bench installs it into ./bin): %v", err)
	}
	dir := b.TempDir()
	payloadFile, csvFile := filepath.Join(dir, "payload.json"), filepath.Join(dir, "bench.csv")
	if err := os.WriteFile(payloadFile, payload, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--no-context", "--server", srv.ClientURL(), "--nkey", admin.SeedFile(b),
		"bench", "js", "pub", "sync", subj, "--stream", stream, "--msgs", strconv.Itoa(n),
		"--payload", payloadFile, "--dedup", "-H", "Content-Type:"+bus.ContentType, "--no-progress", "--csv", csvFile)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nats bench: %v\n%s", err, out)
	}
	f, err := os.Open(csvFile)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		b.Fatalf("nats bench csv: %v %v", rows, err)
	}
	col := func(name string) float64 {
		for i, h := range rows[0] {
			if h == name {
				v, err := strconv.ParseFloat(rows[1][i], 64)
				if err != nil {
					b.Fatalf("nats bench csv %s: %v", name, err)
				}
				return v
			}
		}
		b.Fatalf("nats bench csv has no %s: %v", name, rows[0])
		return 0
	}
	return col("MsgsPerSec"), col("AvgLatencyMicroSecs")
}

// BenchmarkPublish measures synchronous JetStream publishing through bus
// (envelope, schema validation, Nats-Msg-Id, wait for the ack) over
// loopback TCP, then runs `nats bench js pub sync` with the same bytes,
// headers and stream on the same server, and reports the ratio of the two
// rates (bus / nats-bench; 1.0 is parity).
func BenchmarkPublish(b *testing.B) {
	admin := bustest.NewUser(b)
	srv := bustest.StartServer(b, "", bus.Access{Admins: []string{admin.PublicKey}})
	c := bustest.Connect(b, srv.ClientURL(), bus.ClientConfig{Name: "bench", NKeySeed: admin.Seed})
	ctx := context.Background()
	p := benchProgress(1)
	ev, err := events.New("/godwit/bench", p, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(ev)
	b.SetBytes(int64(len(raw)))

	start := time.Now()
	n := 0
	for b.Loop() {
		if _, err := c.Publish(ctx, p); err != nil {
			b.Fatal(err)
		}
		n++
	}
	ours := float64(n) / time.Since(start).Seconds()

	subj, _ := subject.Progress(p.VMAID, p.JobID)
	peer, peerLatency := natsBench(b, srv, admin, subj, bus.StreamProgress, raw, max(n, 2000))
	b.ReportMetric(ours, "bus-msgs/s")
	b.ReportMetric(peer, "natsbench-msgs/s")
	b.ReportMetric(peerLatency, "natsbench-µs/msg")
	b.ReportMetric(ours/peer, "bus/natsbench")
}

// BenchmarkPublishToConsume measures the latency from Publish to the
// Consume handler through bus, one event at a time, next to the same
// round trip with plain nats.go jetstream (publish raw bytes, consume with
// a callback, explicit ack) on the same server, and reports their ratio
// (bus / nats.go; 1.0 is parity).
func BenchmarkPublishToConsume(b *testing.B) {
	admin := bustest.NewUser(b)
	srv := bustest.StartServer(b, "", bus.Access{Admins: []string{admin.PublicKey}})
	c := bustest.Connect(b, srv.ClientURL(), bus.ClientConfig{Name: "bench", NKeySeed: admin.Seed})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.EnsureConsumer(ctx, bus.StreamProgress, "bench-bus", "godwit.progress.vma-bench.>"); err != nil {
		b.Fatal(err)
	}
	if err := c.EnsureConsumer(ctx, bus.StreamJobs, "bench-raw", "godwit.job.>"); err != nil {
		b.Fatal(err)
	}
	gotBus, gotRaw := make(chan struct{}, 1), make(chan struct{}, 1)
	go func() {
		_ = c.Consume(ctx, bus.StreamProgress, "bench-bus", func(context.Context, events.Event, events.Payload) error {
			gotBus <- struct{}{}
			return nil
		})
	}()
	rawCons, err := c.JetStream().Consumer(ctx, bus.StreamJobs, "bench-raw")
	if err != nil {
		b.Fatal(err)
	}
	cc, err := rawCons.Consume(func(m jetstream.Msg) {
		gotRaw <- struct{}{} // like a bus Handler: done, then acked
		_ = m.DoubleAck(ctx)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	p := benchProgress(1)
	ev, _ := events.New("/godwit/bench", p, time.Now())
	raw, _ := json.Marshal(ev)

	var busTime, rawTime time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.Publish(ctx, p); err != nil {
			b.Fatal(err)
		}
		<-gotBus
		t1 := time.Now()
		if _, err := c.JetStream().Publish(ctx, "godwit.job.bench."+strconv.Itoa(n), raw); err != nil {
			b.Fatal(err)
		}
		<-gotRaw
		busTime += t1.Sub(t0)
		rawTime += time.Since(t1)
		n++
	}
	b.ReportMetric(float64(busTime.Microseconds())/float64(n), "bus-µs/event")
	b.ReportMetric(float64(rawTime.Microseconds())/float64(n), "natsgo-µs/event")
	b.ReportMetric(float64(busTime)/float64(rawTime), "bus/natsgo")
}
