package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
)

// startCluster starts three embedded servers as one JetStream cluster,
// with the same access on each, and returns them.
func startCluster(t testing.TB, access bus.Access) []*bus.Server {
	t.Helper()
	return bustest.StartCluster(t, bustest.ClusterConfig{Access: access}).Servers
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

// TestClusterSharesAccess: three nodes with routes over TLS and a route
// password, and the OMA's internal key from one seed, follow the access
// the OMA shares through its bucket: a VMA and an admin it lets in
// connect to nodes other than the OMA's, the internal key works on every
// node, and a node without the route password cannot join.
func TestClusterSharesAccess(t *testing.T) {
	testkit.Long(t)
	dir := t.TempDir()
	ca, cert, key := routeCerts(t, dir)
	secret := rand.Text()
	nodeLogs := &testkit.Buffer{}
	c := bustest.StartCluster(t, bustest.ClusterConfig{Secret: secret, TLSCert: cert, TLSKey: key, TLSCA: ca, Follow: true, Logs: nodeLogs})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the nodes' logs:\n%s", nodeLogs)
		}
	})
	testkit.Eventually(t, "every node routed to the two others", func() bool {
		for _, s := range c.Servers {
			if s.Routes() < 2 {
				return false
			}
		}
		return true
	})
	oma := bustest.ConnectOMA(t, c.Servers[0])
	bustest.EnsureStreams(t, oma, bus.StreamLimits{Replicas: 3})
	ctx := testkit.Context(t)
	if err := oma.EnsureAccessBucket(ctx, 3); err != nil {
		t.Fatal(err)
	}
	vma, admin := bustest.NewUser(t), bustest.NewUser(t)
	if err := oma.ShareAccess(ctx, bus.Access{VMAs: map[string]string{"vma-1": vma.PublicKey}, Admins: []string{admin.PublicKey}}); err != nil {
		t.Fatal(err)
	}
	if err := oma.ShareAccess(ctx, bus.Access{VMAs: map[string]string{"vma-1": "not a key"}}); err == nil {
		t.Error("ShareAccess took a VMA key that is no NKey")
	}

	// The VMA, on the third node, has its progress stored. (Once in about
	// twenty-five runs here, a VMA let into a node by a reload got no
	// answer to its publishes through that connection; a new connection
	// had one: it is tried once more on a new connection.)
	inbox, _ := subject.InboxPrefix("vma-1")
	publish := func() error {
		var conn *bus.Conn
		testkit.Eventually(t, "vma-1 let into node-3", func() bool {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var err error
			conn, err = bus.Connect(cctx, c.Servers[2].ClientURL(), bus.ClientConfig{Name: "vma-1", Source: "/godwit/vma/vma-1",
				NKeySeed: vma.Seed, InboxPrefix: inbox, Confined: true})
			return err == nil
		})
		defer conn.Close()
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		ev, err := events.New("/godwit/vma/vma-1", &events.Progress{JobID: "job-1", VMAID: "vma-1", Seq: 1, Phase: events.PhaseCopying, Disks: []events.DiskProgress{}}, time.Unix(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = "vma-1-progress-1" // the same event both times: stored once
		_, err = conn.PublishEvent(pctx, ev)
		return err
	}
	if err := publish(); err != nil {
		t.Logf("vma-1's progress through node-3: %v; once more on a new connection", err)
		if err := publish(); err != nil {
			t.Fatalf("vma-1's progress through node-3: %v", err)
		}
	}
	if n := bustest.Count(t, oma, bus.StreamProgress, "godwit.>"); n != 1 {
		t.Errorf("PROGRESS holds %d events, want 1", n)
	}
	// The admin on the second node, and the OMA's own key on the third.
	testkit.Eventually(t, "the admin let into node-2", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		a, err := bus.Connect(cctx, c.Servers[1].ClientURL(), bus.ClientConfig{Name: "admin", NKeySeed: admin.Seed})
		if err == nil {
			a.Close()
		}
		return err == nil
	})
	internal := bustest.Connect(t, c.Servers[2].ClientURL(), bus.ClientConfig{Name: "oma-2", NKeySeed: c.Seed, InboxPrefix: "_INBOX_OMA"})
	// The node may be reloading its accounts (the shared access): its
	// JetStream API has no responders for that moment.
	var msgs uint64
	testkit.Eventually(t, "PROGRESS read through node-3", func() bool {
		s, err := internal.JetStream().Stream(ctx, bus.StreamProgress)
		if err != nil {
			return false
		}
		msgs = s.CachedInfo().State.Msgs
		return true
	})
	if msgs != 1 {
		t.Errorf("PROGRESS read through node-3 holds %d events, want 1", msgs)
	}

	// A node with another route password is refused.
	logs := &testkit.Buffer{}
	intruder, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: -1, Name: "intruder", Seed: c.Seed,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Cluster: bus.ClusterConfig{Name: "godwit", Listen: "127.0.0.1:0", Routes: c.Routes, Secret: "wrong",
			TLSCert: cert, TLSKey: key, TLSCA: ca}})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Shutdown(context.Background())
	testkit.Eventually(t, "the intruder's routes refused", func() bool {
		return strings.Contains(strings.ToLower(logs.String()), "authorization violation")
	})
	// The intruder itself counts a route for the moment between a node's
	// INFO and its refusal; the nodes never take it.
	for _, s := range c.Servers {
		if peers := s.RoutePeers(); slices.Contains(peers, "intruder") || len(peers) != len(c.Servers)-1 {
			t.Errorf("%s routes to %q, want the two other nodes and not the intruder", s.Name(), peers)
		}
	}
}

// routeCerts writes a CA and a certificate it signs for 127.0.0.1, for
// servers and clients both (routes are mutual TLS), into dir.
func routeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "godwit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "godwit node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node.key")
	for path, block := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestPublisherThroughANodeLoss: a Publisher with a window of 16 publishes
// 400 progress events into PROGRESS on three replicas, through a
// connection to the stream's leader; after 200 that node is shut down.
// Every event is acknowledged, in order, and stored once.
func TestPublisherThroughANodeLoss(t *testing.T) {
	testkit.Long(t)
	admin := bustest.NewUser(t)
	c := bustest.StartCluster(t, bustest.ClusterConfig{Access: bus.Access{Admins: []string{admin.PublicKey}}})
	setup := bustest.Connect(t, c.URLs(), bus.ClientConfig{Name: "test-admin", Source: "/godwit/test", NKeySeed: admin.Seed})
	bustest.EnsureStreams(t, setup, bus.StreamLimits{Replicas: 3})
	ctx := testkit.Context(t)
	st, err := setup.JetStream().Stream(ctx, bus.StreamProgress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || c.Node(info.Cluster.Leader) < 0 {
		t.Fatalf("PROGRESS's cluster: %+v, %v", info, err)
	}
	leader := c.Node(info.Cluster.Leader)
	urls := []string{c.Servers[leader].ClientURL()}
	for i, s := range c.Servers {
		if i != leader {
			urls = append(urls, s.ClientURL())
		}
	}
	conn := bustest.Connect(t, strings.Join(urls, ","), bus.ClientConfig{Name: "test-publisher", Source: "/godwit/test", NKeySeed: admin.Seed,
		Options: []nats.Option{nats.DontRandomize()}})
	pub := conn.NewPublisher(bus.PublisherConfig{Window: 16})
	defer pub.Close()

	const n = 400
	var mu sync.Mutex
	var acked []uint64
	var gap time.Duration
	last := time.Now()
	publish := func(i int) {
		seq := uint64(i + 1)
		ev, err := events.New("/godwit/test", &events.Progress{JobID: "job-1", VMAID: "vma-1", Seq: seq, Phase: events.PhaseCopying,
			BytesTotal: n, BytesDone: int64(i), Disks: []events.DiskProgress{}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishEvent(ctx, ev, func() {
			mu.Lock()
			defer mu.Unlock()
			acked = append(acked, seq)
			gap, last = max(gap, time.Since(last)), time.Now()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n / 2 {
		publish(i)
	}
	if got := conn.NATS().ConnectedServerName(); got != info.Cluster.Leader {
		t.Fatalf("the publisher is connected to %s, want PROGRESS's leader %s", got, info.Cluster.Leader)
	}
	c.Kill(leader)
	t.Logf("shut down %s, PROGRESS's leader and the publisher's node, after %d events were queued", info.Cluster.Leader, n/2)
	for i := n / 2; i < n; i++ {
		publish(i)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(acked) != n {
		t.Fatalf("%d events acknowledged, want %d", len(acked), n)
	}
	for i, s := range acked {
		if s != uint64(i+1) {
			t.Fatalf("acknowledgement %d is event %d: out of order", i, s)
		}
	}
	t.Logf("the longest wait between two acknowledgements: %s", gap)
	mu.Unlock()
	if got := bustest.Count(t, setup, bus.StreamProgress, "godwit.>"); got != n {
		t.Errorf("PROGRESS holds %d events, want %d: each once", got, n)
	}
}
