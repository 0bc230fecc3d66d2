package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
)

// TestConsumeBatch: messages waiting when the consumer starts come in
// batches of at most size, in stream order; invalid ones and ones on a
// foreign subject never reach the handler; each event is settled by its
// own outcome (a poison one terminated, a failed one redelivered, the
// others acked), and a handler that panics or miscounts its outcomes gets
// its whole batch redelivered.
func TestConsumeBatch(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 2*time.Minute)
	if err := oma.EnsureConsumer(ctx, bus.StreamProgress, bus.OMADurable, subject.AllProgress); err != nil {
		t.Fatal(err)
	}
	js := oma.JetStream()
	if _, err := js.Publish(ctx, "godwit.progress.vma-1.job-x", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	foreign, _ := events.New("/godwit/test", progress("vma-2", "job-x", 1), time.Now())
	rawForeign, _ := json.Marshal(foreign)
	if _, err := js.Publish(ctx, "godwit.progress.vma-1.job-x", rawForeign); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var ids []string
	for i := range n {
		ev, err := oma.Publish(ctx, progress("vma-1", "job-1", uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	// Far enough apart that no first batch holds two of them.
	poison, flaky, panicky, miscount := ids[1], ids[4], ids[12], ids[19]

	const size = 8
	var (
		mu      sync.Mutex
		calls   = map[string]int{}
		batches [][]string
	)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- oma.ConsumeBatch(cctx, bus.StreamProgress, bus.OMADurable, size, func(_ context.Context, batch []bus.Delivery) []error {
			mu.Lock()
			defer mu.Unlock()
			var got []string
			out := make([]error, len(batch))
			first := map[string]bool{}
			for i, d := range batch {
				if d.Payload.(*events.Progress).JobID == "job-x" {
					t.Errorf("handler got a rejected event %s", d.Event.Data)
				}
				got = append(got, d.Event.ID)
				calls[d.Event.ID]++
				first[d.Event.ID] = calls[d.Event.ID] == 1
				switch d.Event.ID {
				case flaky:
					if first[flaky] {
						out[i] = errors.New("database busy")
					}
				case poison:
					out[i] = errors.Join(bus.ErrPoison, errors.New("cannot apply"))
				}
			}
			batches = append(batches, got)
			switch {
			case first[panicky]:
				panic("a bug in the handler") // the batch is redelivered; the consumer goes on
			case first[miscount]:
				return append(out, nil) // one outcome too many, whatever the batch size
			}
			return out
		})
	}()
	// Redeliveries come after 1-2 s of nak delay; a minute leaves room for
	// a loaded machine, and a failure says which event never came back.
	settled := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if calls[id] == 0 {
				return false
			}
		}
		return calls[flaky] >= 2 && calls[panicky] >= 2 && calls[miscount] >= 2
	}
	for deadline := time.Now().Add(time.Minute); !settled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			mu.Lock()
			var seen []int
			for _, id := range ids {
				seen = append(seen, calls[id])
			}
			t.Fatalf("not every event settled in a minute: calls per event %v (poison 1, flaky 4, panicky 12, miscount 19); batches %v", seen, batches)
		}
	}
	cons, err := js.Consumer(ctx, bus.StreamProgress, bus.OMADurable)
	if err != nil {
		t.Fatal(err)
	}
	within(t, time.Minute, "nothing pending", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == n+2
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ConsumeBatch = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls[poison] != 1 {
		t.Errorf("poison event handled %d times, want 1 (terminated)", calls[poison])
	}
	big := false
	for _, b := range batches {
		if len(b) > size {
			t.Errorf("a batch of %d events, max %d", len(b), size)
		}
		big = big || len(b) > 1
	}
	if !big {
		t.Errorf("batches %v: 20 waiting events never came more than one at a time", batches)
	}
	if first := strings.Join(batches[0], " "); !strings.HasPrefix(strings.Join(ids, " "), first) {
		t.Errorf("first batch %v is not the stream's first events in order", batches[0])
	}
}

// TestConsumeBatchAcksWhileStopping: a batch committed as the consumer is
// stopped is still acked, and ConsumeBatch returns only after it was.
func TestConsumeBatchAcksWhileStopping(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	cons := consumerWithAckWait(t, oma, 30*time.Second)
	for seq := range uint64(3) {
		if _, err := oma.Publish(ctx, progress("vma-1", "job-stop", seq+1)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "three events stored", func() bool { return streamMsgs(t, oma, bus.StreamProgress) == 3 })
	cctx, stop := context.WithCancel(ctx)
	handled := 0
	err := oma.ConsumeBatch(cctx, bus.StreamProgress, bus.OMADurable, 0, func(ctx context.Context, batch []bus.Delivery) []error {
		handled += len(batch)
		if handled == 3 {
			stop() // shutdown begins while the handler commits
			<-ctx.Done()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if handled != 3 {
		t.Fatalf("handled %d events, want 3", handled)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 3 || info.NumAckPending != 0 {
		t.Errorf("after stopping: ack floor %d, %d pending: the commit was not acked", info.AckFloor.Stream, info.NumAckPending)
	}
}

// within calls cond every 10 ms until it returns true, and fails the test
// after d, naming what it waited for.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}
