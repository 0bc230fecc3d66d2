package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
)

// TestWatch returns the valid events published after it began, skipping
// malformed ones and ones on a foreign subject, and ends with ctx.
func TestWatch(t *testing.T) {
	admin := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{Admins: []string{admin.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	w, err := oma.Watch("godwit.discover.result.vma-1.>")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	raw := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{NKeySeed: admin.Seed}).NATS()
	// Garbage, then a valid result of vma-2 sent on vma-1's subject, then the real one.
	_ = raw.Publish("godwit.discover.result.vma-1.r1", []byte("garbage"))
	foreign, _ := events.New("/x", &events.DiscoverResult{RequestID: "r1", VMAID: "vma-2", VCenter: events.VCenterRef{Host: "vc"}, VMs: []events.VM{}}, time.Now())
	data, _ := json.Marshal(foreign)
	_ = raw.Publish("godwit.discover.result.vma-1.r1", data)
	want, err := oma.Publish(ctx, &events.DiscoverResult{RequestID: "r1", VMAID: "vma-1", VCenter: events.VCenterRef{Host: "vc"}, VMs: []events.VM{}})
	if err != nil {
		t.Fatal(err)
	}
	ev, p, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := p.(*events.DiscoverResult); ev.ID != want.ID || !ok || res.VMAID != "vma-1" {
		t.Errorf("Next = %s %#v, want the event %s", ev.ID, p, want.ID)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, _, err := w.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing to come = %v, want the deadline", err)
	}
}
