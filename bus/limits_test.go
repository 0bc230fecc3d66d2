package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
)

// TestAFloodingVMACannotEvictAnothersCommands has vma-1 flood the subjects
// it may publish on in the queue streams while vma-2 has a command queued.
// The queue streams hold every VMA's share, so the flood only rolls vma-1's
// own messages: it is never refused for want of room, the OMA still queues
// vma-2's commands, and vma-2 gets each of them.
func TestAFloodingVMACannotEvictAnothersCommands(t *testing.T) {
	t.Parallel()
	u1, u2 := bustest.NewUser(t), bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u1.PublicKey, "vma-2": u2.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 2*time.Minute)
	const perSubject = 20
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{MaxBytes: 256 << 10, QueueMsgsPerSubject: perSubject}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"vma-1", "vma-2"} {
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	s, err := oma.JetStream().Stream(ctx, bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if share := bus.QueueShare(cfg); share < 2*perSubject*bus.MaxQueuedMsgSize || cfg.MaxBytes != 2*share {
		t.Fatalf("COMMANDS holds %d bytes with a share of %d per VMA, want two shares", cfg.MaxBytes, share)
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-2", VMAID: "vma-2"}); err != nil {
		t.Fatal(err)
	}

	vma1 := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u1.Seed)
	js := vma1.JetStream()
	if _, err := js.Publish(ctx, "godwit.replicate.cancel.vma-1", bytes.Repeat([]byte("x"), bus.MaxQueuedMsgSize+1)); err == nil {
		t.Error("a message over MaxQueuedMsgSize was taken")
	}
	big := bytes.Repeat([]byte("x"), bus.MaxQueuedMsgSize-1<<10) // with its headers, just under the limit
	for _, subj := range []string{"godwit.replicate.command.vma-1", "godwit.replicate.cancel.vma-1"} {
		for i := range 3 * perSubject {
			if _, err := js.Publish(ctx, subj, big); err != nil {
				t.Fatalf("publish %d on its own subject %s: %v", i, subj, err)
			}
		}
		if n := bustest.Count(t, oma, bus.StreamCommands, subj); n != perSubject {
			t.Errorf("%s holds %d messages, want its last %d", subj, n, perSubject)
		}
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-3", VMAID: "vma-2"}); err != nil {
		t.Fatalf("the OMA cannot queue a command for vma-2 after vma-1's flood: %v", err)
	}

	vma2 := bustest.ConnectVMA(t, srv.ClientURL(), "vma-2", u2.Seed)
	got := make(chan string, 2)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = vma2.Consume(cctx, bus.StreamCommands, bus.VMADurable("vma-2"), func(_ context.Context, _ events.Event, p events.Payload) error {
			got <- p.(*events.ReplicateCancel).JobID
			return nil
		})
	}()
	for _, want := range []string{"job-2", "job-3"} {
		select {
		case job := <-got:
			if job != want {
				t.Errorf("vma-2 got %s, want %s", job, want)
			}
		case <-ctx.Done():
			t.Fatalf("vma-2's queued command %s was not delivered", want)
		}
	}
}

// TestQueueStreamsMakeRoomForEachVMA: each VMA's consumers raise the queue
// streams' byte limits to hold its share, and a restart with the
// configured limits does not lower them again.
func TestQueueStreamsMakeRoomForEachVMA(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, time.Minute)
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	limits := bus.StreamLimits{MaxBytes: 1 << 20, QueueMsgsPerSubject: 10}
	maxBytes := func(stream string) (int64, int64) {
		s, err := oma.JetStream().Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		return cfg.MaxBytes, bus.QueueShare(cfg)
	}
	if err := oma.EnsureStreams(ctx, limits); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := oma.EnsureVMAConsumers(ctx, fmt.Sprintf("vma-%d", i)); err != nil {
			t.Fatal(err)
		}
		for _, stream := range []string{bus.StreamCommands, bus.StreamDiscovery} {
			if got, share := maxBytes(stream); got != max(limits.MaxBytes, int64(i)*share) {
				t.Errorf("%s with %d VMAs: max bytes %d, want max(%d, %d × %d)", stream, i, got, limits.MaxBytes, i, share)
			}
		}
	}
	if err := oma.EnsureStreams(ctx, limits); err != nil {
		t.Fatal(err)
	}
	if got, share := maxBytes(bus.StreamCommands); got != 5*share {
		t.Errorf("after EnsureStreams again, COMMANDS holds %d bytes, want 5 shares of %d", got, share)
	}
	if got, share := maxBytes(bus.StreamProgress); got != limits.MaxBytes || share != 0 {
		t.Errorf("PROGRESS holds %d bytes (share %d), want %d", got, share, limits.MaxBytes)
	}
}

// TestStreamNearItsLimitIsAlerted fills a history stream past 80 % of its
// byte limit: the OMA publishes a warning, and clears it once the stream
// is purged.
func TestStreamNearItsLimitIsAlerted(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, time.Minute)
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	alerts, err := oma.Watch("godwit.alert.stream." + bus.StreamProgress)
	if err != nil {
		t.Fatal(err)
	}
	defer alerts.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() { _ = oma.WatchStreams(wctx, bus.StreamWatch{Every: 20 * time.Millisecond}) }()
	for i := range 200 { // about 120 KiB: the stream drops its oldest
		if _, err := oma.Publish(ctx, progress("vma-1", fmt.Sprintf("job-%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	_, p, err := alerts.Next(ctx)
	if err != nil {
		t.Fatalf("no stream alert: %v", err)
	}
	if a := p.(*events.StreamAlert); a.Level != events.AlertWarning || a.DiscardNew || a.Percent < 80 {
		t.Errorf("alert = %+v, want a warning about a stream that drops its oldest", a)
	}
	s, err := oma.JetStream().Stream(ctx, bus.StreamProgress)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if _, p, err = alerts.Next(ctx); err != nil {
		t.Fatalf("no cleared alert: %v", err)
	}
	if a := p.(*events.StreamAlert); a.Level != events.AlertCleared {
		t.Errorf("alert after the purge = %+v, want cleared", a)
	}
}
