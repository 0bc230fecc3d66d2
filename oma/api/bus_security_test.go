package api_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/oma/control"
)

// squatDurable has an admin put a consumer named like a VMA's durable on
// stream, with a configuration the OMA cannot update into its own (no
// acks), so that creating the VMA's durable fails.
func squatDurable(t *testing.T, o *omaUnderTest, stream, vmaID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := bustest.Connect(t, o.NATSURL, bus.ClientConfig{Name: "admin", NKeySeed: o.AdminSeed})
	defer admin.Close()
	js := admin.JetStream()
	if err := js.DeleteConsumer(ctx, stream, bus.VMADurable(vmaID)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: bus.VMADurable(vmaID), AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatalf("squat %s on %s: %v", bus.VMADurable(vmaID), stream, err)
	}
}

func registered(o *omaUnderTest) map[string]bool {
	o.t.Helper()
	var list struct{ VMAs []struct{ ID string } }
	if code := o.do(http.MethodGet, "/api/v1/vmas", nil, &list); code != http.StatusOK {
		o.t.Fatalf("GET /api/v1/vmas = %d", code)
	}
	ids := map[string]bool{}
	for _, v := range list.VMAs {
		ids[v.ID] = true
	}
	return ids
}

// TestRegisteringAVMAIsAtomic makes creating a new VMA's durable fail: the
// VMA is not registered, a restart works, and a VMA whose durable breaks
// later does not keep the OMA from starting or the other VMAs from working.
func TestRegisteringAVMAIsAtomic(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	var cred1 control.VMACredentials
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-1"}, &cred1); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vmas vma-1 = %d", code)
	}

	// Its commands durable would be created, its discovery one cannot be.
	squatDurable(t, o, bus.StreamDiscovery, "vma-2")
	var problem struct{ Detail string }
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-2"}, &problem); code != http.StatusBadGateway {
		t.Errorf("POST /api/v1/vmas with its durable taken = %d %q, want 502", code, problem.Detail)
	}
	if ids := registered(o); ids["vma-2"] || !ids["vma-1"] {
		t.Errorf("registered VMAs = %v, want vma-1 and not vma-2", ids)
	}

	// A registered VMA whose durable breaks afterwards.
	var cred3 control.VMACredentials
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-3"}, &cred3); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vmas vma-3 = %d", code)
	}
	squatDurable(t, o, bus.StreamCommands, "vma-3")

	o.restart() // fails the test if the OMA does not come back
	if ids := registered(o); !ids["vma-1"] || !ids["vma-3"] || ids["vma-2"] {
		t.Errorf("registered VMAs after the restart = %v, want vma-1 and vma-3", ids)
	}
	v1 := o.connectVMA("vma-1", cred1.NKeySeed) // its heartbeat is applied
	o.learn(v1, testVM("vm-1", 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, stream := range []string{bus.StreamCommands, bus.StreamDiscovery} {
		if err := bustest.Pull(ctx, v1.conn, stream, bus.VMADurable("vma-1")); err != nil {
			t.Errorf("vma-1 reads its %s durable after the restart: %v", stream, err)
		}
	}
}
