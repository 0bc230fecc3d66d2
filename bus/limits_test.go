package bus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

// TestAFloodingVMACannotEvictAnothersCommands has vma-1 flood the subjects
// it may publish on in the queue streams while vma-2 has a command queued.
// Over its per-subject limit vma-1 only rolls its own messages; once the
// stream is full its publishes are refused; the OMA alerts; vma-2's command
// is still delivered.
func TestAFloodingVMACannotEvictAnothersCommands(t *testing.T) {
	t.Parallel()
	u1, u2 := bustest.NewUser(t), bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u1.PublicKey, "vma-2": u2.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 2*time.Minute)
	const maxBytes = 256 << 10
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{MaxBytes: maxBytes, MaxMsgsPerSubject: 20}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"vma-1", "vma-2"} {
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-2", VMAID: "vma-2"}); err != nil {
		t.Fatal(err)
	}
	alerts, err := oma.Watch("godwit.alert.stream." + bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	defer alerts.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { _ = oma.WatchStreams(wctx, bus.StreamWatch{Every: 20 * time.Millisecond}) }()

	inbox, _ := subject.InboxPrefix("vma-1")
	vma1 := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "vma-1", NKeySeed: u1.Seed, InboxPrefix: inbox, Confined: true})
	js := vma1.JetStream()
	big := bytes.Repeat([]byte("x"), 8<<10)
	if _, err := js.Publish(ctx, "godwit.replicate.cancel.vma-1", bytes.Repeat([]byte("x"), bus.MaxQueuedMsgSize+1)); err == nil {
		t.Error("a message over MaxQueuedMsgSize was taken")
	}
	// One subject over its limit rolls its own messages only.
	for range 40 {
		if _, err := js.Publish(ctx, "godwit.replicate.command.vma-1", big); err != nil {
			t.Fatalf("publish on its own subject under the byte limit: %v", err)
		}
	}
	if n := bustest.Count(t, oma, bus.StreamCommands, "godwit.replicate.command.vma-1"); n != 20 {
		t.Errorf("vma-1's subject holds %d messages, want its last 20", n)
	}
	// Its two subjects together fill the stream: then it is refused.
	refused := false
	for i := 0; i < 40 && !refused; i++ {
		_, err := js.Publish(ctx, "godwit.replicate.cancel.vma-1", big)
		refused = err != nil
	}
	if !refused {
		t.Fatal("the flood was never refused")
	}
	if n := bustest.Count(t, oma, bus.StreamCommands, "godwit.replicate.cancel.vma-2"); n != 1 {
		t.Errorf("vma-2's queued command: %d messages, want 1", n)
	}
	// The OMA alerted.
	_, p, err := alerts.Next(ctx)
	if err != nil {
		t.Fatalf("no stream alert: %v", err)
	}
	if a := p.(*events.StreamAlert); a.Level != events.AlertWarning || !a.DiscardNew || a.Percent < 80 {
		t.Errorf("alert = %+v, want a warning about a stream that refuses when full", a)
	}
	// vma-2 gets its command.
	inbox2, _ := subject.InboxPrefix("vma-2")
	vma2 := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "vma-2", NKeySeed: u2.Seed, InboxPrefix: inbox2, Confined: true})
	got := make(chan string, 1)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = vma2.Consume(cctx, bus.StreamCommands, bus.VMADurable("vma-2"), func(_ context.Context, _ events.Event, p events.Payload) error {
			got <- p.(*events.ReplicateCancel).JobID
			return nil
		})
	}()
	select {
	case job := <-got:
		if job != "job-2" {
			t.Errorf("vma-2 got %s", job)
		}
	case <-ctx.Done():
		t.Fatal("vma-2's queued command was not delivered")
	}
}
