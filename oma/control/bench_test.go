package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/schema"
	"github.com/godwit/godwit/testkit"
)

// benchJobs is how many jobs the progress benchmarks run at once.
const benchJobs = 1000

func benchJobIDs() []string {
	ids := make([]string, benchJobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-%04d", i)
	}
	return ids
}

// benchEvents returns n progress events as a VMA publishes them, round by
// round over the jobs (event k is job k%len(jobs)'s with sequence number
// k/len(jobs)+1): envelopes checked against their schemas, each with its
// Nats-Msg-Id and Content-Type, about 500 bytes.
func benchEvents(tb testing.TB, jobs []string, n int) []*nats.Msg {
	tb.Helper()
	v, err := schema.New()
	if err != nil {
		tb.Fatal(err)
	}
	msgs := make([]*nats.Msg, n)
	for k := range msgs {
		job, seq := jobs[k%len(jobs)], uint64(k/len(jobs)+1)
		p := prog(job, seq, events.PhaseCopying, int64(seq)<<10)
		p.Disks = append(p.Disks, events.DiskProgress{Key: 2001, BytesTotal: 1 << 40, BytesDone: 1 << 39})
		ev, err := events.New("/godwit/vma/vma-1", p, time.Now())
		if err != nil {
			tb.Fatal(err)
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if err := v.CheckEvent(raw); err != nil {
			tb.Fatal(err)
		}
		subj, _ := p.NATSSubject()
		msgs[k] = &nats.Msg{Subject: subj, Data: raw, Header: nats.Header{}}
		msgs[k].Header.Set("Content-Type", bus.ContentType)
		msgs[k].Header.Set(jetstream.MsgIDHeader, ev.ID)
	}
	return msgs
}

// publishAll publishes msgs as fast as JetStream takes them (async, a
// window of acks in flight) and returns the last one's stream sequence.
func publishAll(tb testing.TB, conn *bus.Conn, msgs []*nats.Msg) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := conn.JetStream()
	var last jetstream.PubAckFuture
	for _, m := range msgs {
		if js.PublishAsyncPending() >= 1000 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				tb.Fatal("async publishes not acked in a minute")
			}
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			tb.Fatal(err)
		}
		last = f
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		tb.Fatal("async publishes not acked in a minute")
	}
	select {
	case ack := <-last.Ok():
		return ack.Sequence
	case err := <-last.Err():
		tb.Fatal(err)
	}
	return 0
}

// ackSpy calls f with the stream sequence of each message the OMA's
// progress consumer acks, and when the ack went by.
func ackSpy(tb testing.TB, conn *bus.Conn, f func(seq uint64, at time.Time)) {
	tb.Helper()
	sub, err := conn.NATS().Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		at := time.Now()
		if string(m.Data) != "+ACK" {
			return
		}
		tok := strings.Split(m.Subject, ".")
		var stream, durable, sseq string
		switch len(tok) {
		case 9: // $JS.ACK.stream.consumer.delivered.sseq.cseq.time.pending
			stream, durable, sseq = tok[2], tok[3], tok[5]
		case 12: // $JS.ACK.domain.account.stream.consumer.delivered.sseq.cseq.time.pending.token
			stream, durable, sseq = tok[4], tok[5], tok[7]
		default:
			return
		}
		if stream != bus.StreamProgress || durable != bus.OMADurable {
			return
		}
		if seq, err := strconv.ParseUint(sseq, 10, 64); err == nil {
			f(seq, at)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := conn.NATS().Flush(); err != nil {
		tb.Fatal(err)
	}
}

// bareConsume reads every message of the progress stream through a new
// durable consumer of its own with plain nats.go jetstream (callback,
// ack), and returns how long it took until the message with stream
// sequence last was acked. It is configured as the OMA's own consumer.
func bareConsume(tb testing.TB, conn *bus.Conn, last uint64) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := conn.EnsureConsumer(ctx, bus.StreamProgress, "bench-bare"); err != nil { // unfiltered, as the OMA's
		tb.Fatal(err)
	}
	cons, err := conn.JetStream().Consumer(ctx, bus.StreamProgress, "bench-bare")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream == last {
			close(done)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		tb.Fatal("bare consumer did not reach the last message in a minute")
	}
	return time.Since(start)
}

// BenchmarkProgressApply measures how fast the OMA applies progress: b.N
// events for 1,000 jobs, published as fast as the server takes them into
// the progress stream, are first read and acked by a bare nats.go consumer
// (the peer), then applied by the OMA's Control (checked against their
// schemas, applied in batches, one bbolt transaction each, then acked).
// It reports both rates and their ratio (OMA / bare).
func BenchmarkProgressApply(b *testing.B) {
	h := newHarness(b)
	jobs := benchJobIDs()
	h.putJobs("vma-1", events.JobCopying, jobs...)
	h.stop()
	pub := bustest.ConnectOMA(b, h.srv)
	msgs := benchEvents(b, jobs, b.N)
	last := publishAll(b, pub, msgs)
	bare := bareConsume(b, pub, last)

	acked := make(chan struct{})
	var once sync.Once
	ackSpy(b, pub, func(seq uint64, _ time.Time) {
		if seq == last {
			once.Do(func() { close(acked) })
		}
	})
	if err := h.open(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	h.run()
	select {
	case <-acked:
	case <-time.After(5 * time.Minute):
		b.Fatal("the OMA did not apply the events in 5 minutes")
	}
	applied := time.Since(start)
	b.StopTimer()

	rounds := uint64((b.N + benchJobs - 1) / benchJobs)
	err := h.st.View(func(tx *bbolt.Tx) error {
		for k, id := range jobs[:min(b.N, benchJobs)] {
			j, err := store.GetJob(tx, id)
			if err != nil {
				return err
			}
			want := rounds
			if uint64(k) >= uint64(b.N)%benchJobs && b.N%benchJobs != 0 {
				want = rounds - 1
			}
			if j.LastSeq != want {
				return fmt.Errorf("%s at seq %d, want %d", id, j.LastSeq, want)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	omaRate, bareRate := float64(b.N)/applied.Seconds(), float64(b.N)/bare.Seconds()
	b.ReportMetric(omaRate, "applied/s")
	b.ReportMetric(bareRate, "bare-acked/s")
	b.ReportMetric(omaRate/bareRate, "oma/bare")
}

// BenchmarkProgressLag measures how far behind the OMA applies progress
// at 1,000 jobs each sending one event a second: b.N events published at
// 1,000 a second, evenly spread, with synchronous publishes, to a running
// OMA. An event's lag is the time from just before its publish to the ack
// the OMA sends after committing it; p50, p99 and max are reported.
func BenchmarkProgressLag(b *testing.B) {
	h := newHarness(b)
	jobs := benchJobIDs()
	h.putJobs("vma-1", events.JobCopying, jobs...)
	pub := bustest.ConnectOMA(b, h.srv)
	testkit.Eventually(b, "the OMA's progress consumer", func() bool {
		_, err := pub.JetStream().Consumer(context.Background(), bus.StreamProgress, bus.OMADurable)
		return err == nil
	})
	msgs := benchEvents(b, jobs, b.N)
	var (
		mu    sync.Mutex
		sent  = map[uint64]time.Time{}
		acked = map[uint64]time.Time{}
		all   = make(chan struct{})
	)
	ackSpy(b, pub, func(seq uint64, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := acked[seq]; !ok {
			acked[seq] = at
			if len(acked) == len(msgs) {
				close(all)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	js := pub.JetStream()
	b.ResetTimer()
	start := time.Now()
	for k, m := range msgs {
		if d := time.Until(start.Add(time.Duration(k) * time.Second / benchJobs)); d > 0 {
			time.Sleep(d)
		}
		t0 := time.Now()
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		sent[ack.Sequence] = t0
		mu.Unlock()
	}
	select {
	case <-all:
	case <-ctx.Done():
		b.Fatal("the OMA did not apply the events in 5 minutes")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	lags := make([]time.Duration, 0, len(sent))
	for seq, t0 := range sent {
		lags = append(lags, acked[seq].Sub(t0))
	}
	slices.Sort(lags)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lags[len(lags)/2]), "p50-ms")
	b.ReportMetric(ms(lags[len(lags)*99/100]), "p99-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
	b.ReportMetric(float64(len(msgs))/time.Since(start).Seconds(), "events/s")
}
