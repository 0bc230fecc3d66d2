package bus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// TestPublisherLeavesASilentConnection: a publish that a subscriber
// receives and nobody acknowledges (no stream yet, so no "no responders"
// either) is sent again and again on a connection that counts itself
// connected; after the Stall the publisher reconnects, and once a stream
// stores the subject the event is acknowledged and stored once.
func TestPublisherLeavesASilentConnection(t *testing.T) {
	admin := bustest.NewUser(t)
	srv := startServerOn(t, -1, bus.Access{Admins: []string{admin.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	silent, err := oma.NATS().Subscribe("godwit.progress.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := oma.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	conn := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "test-publisher", Source: "/godwit/test", NKeySeed: admin.Seed})
	pub := conn.NewPublisher(bus.PublisherConfig{Window: 4, Stall: 2 * time.Second})
	defer pub.Close()
	ctx := testkit.Context(t)
	acked := make(chan struct{})
	if _, err := pub.Publish(ctx, &events.Progress{JobID: "job-1", VMAID: "vma-1", Seq: 1, Phase: events.PhaseCopying,
		BytesTotal: 1, Disks: []events.DiskProgress{}}, func() { close(acked) }); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the publisher reconnecting", func() bool {
		return conn.NATS().Stats().Reconnects > 0 && conn.NATS().IsConnected()
	})
	select {
	case <-acked:
		t.Fatal("an event nobody stored was acknowledged")
	default:
	}
	if err := silent.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	<-acked
	if got := bustest.Count(t, oma, bus.StreamProgress, "godwit.>"); got != 1 {
		t.Errorf("PROGRESS holds %d events, want 1", got)
	}
}
