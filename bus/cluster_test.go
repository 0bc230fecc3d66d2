package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// startCluster starts three embedded servers as one JetStream cluster,
// with the same access on each, and returns them.
func startCluster(t testing.TB, access bus.Access) []*bus.Server {
	t.Helper()
	first, _ := testkit.FreePorts(t, 3)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", first+i))
	}
	servers := make([]*bus.Server, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testkit.Wait(t))
			defer cancel()
			servers[i], errs[i] = bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: -1, Name: fmt.Sprintf("oma-%d", i+1),
				Access: access, ReadyTimeout: testkit.Wait(t),
				Cluster: bus.ClusterConfig{Name: "godwit", Listen: fmt.Sprintf("127.0.0.1:%d", first+i), Routes: routes}})
		})
	}
	wg.Wait()
	for i, s := range servers {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i+1, errs[i])
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	return servers
}

// TestClusterKeepsEventsThroughANodeLoss: three nodes, the streams
// replicated on all three; the node that leads PROGRESS is shut down in
// the middle of the publishes. Every event is stored once: none lost,
// none twice (a publish retried after the loss carries its event id).
func TestClusterKeepsEventsThroughANodeLoss(t *testing.T) {
	testkit.Long(t)
	admin := bustest.NewUser(t)
	servers := startCluster(t, bus.Access{Admins: []string{admin.PublicKey}})
	url := servers[0].ClientURL() + "," + servers[1].ClientURL() + "," + servers[2].ClientURL()
	conn := bustest.Connect(t, url, bus.ClientConfig{Name: "test-admin", Source: "/godwit/test", NKeySeed: admin.Seed})
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Wait(t))
	defer cancel()
	var last error
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the last EnsureStreams: %v", last)
		}
	})
	testkit.Eventually(t, "the streams on three replicas (a meta leader elected)", func() bool {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last = conn.EnsureStreams(ectx, bus.StreamLimits{Replicas: 3})
		return last == nil
	})
	st, err := conn.JetStream().Stream(ctx, bus.StreamProgress)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().Config.Replicas; n != 3 {
		t.Fatalf("PROGRESS has %d replicas, want 3", n)
	}
	const n = 200
	publish := func(i int) {
		ev, err := events.New("/godwit/test", &events.Progress{JobID: fmt.Sprintf("job-%d", i%10), VMAID: "vma-1", Seq: uint64(i + 1), Phase: events.PhaseCopying,
			BytesTotal: n, BytesDone: int64(i), Disks: []events.DiskProgress{}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// The same event again after a failure: stored once (its id).
		testkit.Eventually(t, fmt.Sprintf("event %d stored", i), func() bool {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := conn.PublishEvent(pctx, ev)
			return err == nil
		})
	}
	for i := range n / 2 {
		publish(i)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("PROGRESS's cluster: %+v, %v", info.Cluster, err)
	}
	leader := info.Cluster.Leader
	for _, s := range servers {
		if s.Name() == leader {
			if err := s.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("shut down %s, PROGRESS's leader, after %d events", leader, n/2)
	for i := n / 2; i < n; i++ {
		publish(i)
	}
	// Read them all back from the two nodes left.
	var got []uint64
	testkit.Eventually(t, "every event read back", func() bool {
		got = got[:0]
		cons, err := conn.JetStream().OrderedConsumer(ctx, bus.StreamProgress, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return false
		}
		for {
			msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
			if errors.Is(err, jetstream.ErrNoMessages) || err != nil {
				break
			}
			var ev events.Event
			var p events.Progress
			if jsonErr := decodeProgress(msg.Data(), &ev, &p); jsonErr != nil {
				t.Fatal(jsonErr)
			}
			got = append(got, p.Seq)
		}
		return len(got) >= n
	})
	seen := map[uint64]int{}
	for _, s := range got {
		seen[s]++
	}
	for i := 1; i <= n; i++ {
		if seen[uint64(i)] != 1 {
			t.Errorf("event %d stored %d times, want once", i, seen[uint64(i)])
		}
	}
}

// decodeProgress reads a stored progress event.
func decodeProgress(data []byte, ev *events.Event, p *events.Progress) error {
	if err := json.Unmarshal(data, ev); err != nil {
		return err
	}
	return ev.Decode(p)
}

// BenchmarkPublishReplicas measures what replication costs a synchronous
// publish: b.N progress events published one by one, acked, into PROGRESS
// on one node (R1), then on a three-node cluster with the stream on three
// replicas (R3, a client on one node), in the same run. It reports both
// rates and R3's cost per publish as a multiple of R1's.
func BenchmarkPublishReplicas(b *testing.B) {
	admin := bustest.NewUser(b)
	access := bus.Access{Admins: []string{admin.PublicKey}}
	rate := func(url string, replicas int) float64 {
		c := bustest.Connect(b, url, bus.ClientConfig{Name: "bench", NKeySeed: admin.Seed})
		ctx := context.Background()
		deadline := time.Now().Add(time.Minute)
		for {
			ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.EnsureStreams(ectx, bus.StreamLimits{Replicas: replicas})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("the streams on %d replicas: %v", replicas, err)
			}
		}
		p := benchProgress(1)
		start := time.Now()
		for range b.N {
			if _, err := c.Publish(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		return float64(b.N) / time.Since(start).Seconds()
	}
	single := bustest.StartServer(b, "", access)
	r1 := rate(single.ClientURL(), 1)
	nodes := startCluster(b, access)
	r3 := rate(nodes[0].ClientURL(), 3)
	b.ReportMetric(r1, "R1-msgs/s")
	b.ReportMetric(r3, "R3-msgs/s")
	b.ReportMetric(r1/r3, "R3-cost-x")
}
