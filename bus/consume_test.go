package bus_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
)

// consumerWithAckWait creates the OMA's progress consumer with a short ack
// wait, so that the tests see what JetStream does when it runs out.
func consumerWithAckWait(t *testing.T, oma *bus.Conn, wait time.Duration) jetstream.Consumer {
	t.Helper()
	cons, err := oma.JetStream().CreateOrUpdateConsumer(ctxT(t, 10*time.Second), bus.StreamProgress, jetstream.ConsumerConfig{
		Durable: bus.OMADurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: wait, FilterSubjects: []string{subject.AllProgress},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// TestConsumeLongHandlerIsNotRedelivered: a handler that runs for several
// ack waits is told in progress, so JetStream does not deliver its message
// again meanwhile.
func TestConsumeLongHandlerIsNotRedelivered(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	// Redelivered only if JetStream hears nothing of the message for an ack
	// wait: from its delivery to the first report in progress (a third of
	// the ack wait later) and between reports. A loaded machine under -race
	// can stall that long for a 200 ms ack wait, not for 2 s.
	const ackWait = 2 * time.Second
	cons := consumerWithAckWait(t, oma, ackWait)
	if _, err := oma.Publish(ctx, progress("vma-1", "job-long", 1)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- oma.Consume(cctx, bus.StreamProgress, bus.OMADurable, func(ctx context.Context, _ events.Event, _ events.Payload) error {
			if calls.Add(1) == 1 {
				select { // long work: past the ack wait, without reports a redelivery
				case <-time.After(2 * ackWait):
				case <-ctx.Done():
				}
			}
			return nil
		})
	}()
	testkit.Eventually(t, "message acked", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == 1 && info.NumAckPending == 0
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1: the message was redelivered while it ran", n)
	}
}

// TestConsumeAcksWhileStopping: a handler that commits as the consumer is
// stopped still gets its message acked, and Consume returns only after the
// handler did.
func TestConsumeAcksWhileStopping(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	cons := consumerWithAckWait(t, oma, 30*time.Second)
	if _, err := oma.Publish(ctx, progress("vma-1", "job-stop", 1)); err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	var finished atomic.Bool
	err := oma.Consume(cctx, bus.StreamProgress, bus.OMADurable, func(ctx context.Context, _ events.Event, _ events.Payload) error {
		stop() // shutdown begins while the handler commits
		<-ctx.Done()
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Error("Consume returned before its handler")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 1 || info.NumAckPending != 0 {
		t.Errorf("after stopping: ack floor %d, %d pending: the commit was not acked", info.AckFloor.Stream, info.NumAckPending)
	}
}

// TestConsumeRecreatesItsDeletedDurable deletes the durable that Consume
// and ConsumeBatch read, as an operator's tool could: each creates it
// again, says so in the log, and goes on from the message after the last
// one it handled: nothing is lost, and nothing is delivered again but, at
// most, that last one.
func TestConsumeRecreatesItsDeletedDurable(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "Consume", true: "ConsumeBatch"}[batch], func(t *testing.T) {
			t.Parallel()
			srv := bustest.StartServer(t, "", bus.Access{})
			var logs testkit.Buffer
			ctx := ctxT(t, time.Minute)
			oma, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(oma.Close)
			if err := oma.EnsureConsumer(ctx, bus.StreamProgress, bus.OMADurable); err != nil {
				t.Fatal(err)
			}
			seen := make(chan uint64, 16)
			h := func(_ context.Context, _ events.Event, p events.Payload) error {
				seen <- p.(*events.Progress).Seq
				return nil
			}
			cctx, stop := context.WithCancel(ctx)
			defer stop()
			go func() {
				if batch {
					_ = oma.ConsumeBatch(cctx, bus.StreamProgress, bus.OMADurable, 4, func(ctx context.Context, ds []bus.Delivery) []error {
						for _, d := range ds {
							_ = h(ctx, d.Event, d.Payload)
						}
						return nil
					})
					return
				}
				_ = oma.Consume(cctx, bus.StreamProgress, bus.OMADurable, h)
			}()
			next := func(want uint64) {
				t.Helper()
				select {
				case got := <-seen:
					if got == want-1 && want == 3 {
						// At least once: the last message before the deletion
						// may come again (its ack raced with the deletion),
						// never the ones before it.
						got = <-seen
					}
					if got != want {
						t.Fatalf("handled seq %d, want %d\n%s", got, want, logs.String())
					}
				case <-ctx.Done():
					t.Fatalf("seq %d never handled", want)
				}
			}
			for seq := uint64(1); seq <= 2; seq++ {
				if _, err := oma.Publish(ctx, progress("vma-1", "job-1", seq)); err != nil {
					t.Fatal(err)
				}
				next(seq)
			}
			testkit.Eventually(t, "acks", func() bool {
				c, err := oma.JetStream().Consumer(ctx, bus.StreamProgress, bus.OMADurable)
				return err == nil && c.CachedInfo().AckFloor.Stream == 2
			})
			if err := oma.JetStream().DeleteConsumer(ctx, bus.StreamProgress, bus.OMADurable); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, "the durable created again", func() bool {
				_, err := oma.JetStream().Consumer(ctx, bus.StreamProgress, bus.OMADurable)
				return err == nil
			})
			if _, err := oma.Publish(ctx, progress("vma-1", "job-1", 3)); err != nil {
				t.Fatal(err)
			}
			next(3)
			if !strings.Contains(logs.String(), "durable consumer was deleted; creating it again") {
				t.Errorf("the log does not say the durable was created again:\n%s", logs.String())
			}

		})
	}
}
