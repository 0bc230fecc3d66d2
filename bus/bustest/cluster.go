package bustest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/testkit"
)

// ClusterConfig changes the cluster StartCluster starts; the zero value is
// three nodes that let in nobody but the OMA's internal user.
type ClusterConfig struct {
	// Nodes is how many nodes; 0 means 3.
	Nodes int
	// Access is every node's access from the start.
	Access bus.Access
	// Seed is the OMA's internal user's seed on every node; empty means a
	// new one, in Cluster.Seed.
	Seed []byte
	// Secret is the routes' password; empty means none.
	Secret string
	// TLSCert, TLSKey and TLSCA make the routes TLS (bus.ClusterConfig).
	TLSCert, TLSKey, TLSCA string
	// Logs, when set, receives every node's log.
	Logs io.Writer
	// Follow makes every node follow the access the OMA shares
	// (bus.Server.FollowAccess), as an oma node does.
	Follow bool
}

// Cluster is a JetStream cluster of embedded servers on loopback, shut
// down when the test ends.
type Cluster struct {
	tb testing.TB
	// Servers are the nodes, named node-1, node-2, ...
	Servers []*bus.Server
	// Seed is the OMA's internal user's seed, the same on every node.
	Seed []byte
	// Routes are the nodes' route URLs.
	Routes []string

	mu   sync.Mutex
	down map[int]bool
}

// StartCluster starts a cluster and waits until every node accepts
// clients (JetStream's meta leader may be elected later).
func StartCluster(tb testing.TB, cfg ClusterConfig) *Cluster {
	tb.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if len(cfg.Seed) == 0 {
		cfg.Seed = NewUser(tb).Seed
	}
	first, _ := testkit.FreePorts(tb, cfg.Nodes)
	c := &Cluster{tb: tb, Seed: cfg.Seed, Servers: make([]*bus.Server, cfg.Nodes), down: map[int]bool{}}
	for i := range cfg.Nodes {
		c.Routes = append(c.Routes, fmt.Sprintf("nats-route://127.0.0.1:%d", first+i))
	}
	var logger *slog.Logger
	if cfg.Logs != nil {
		logger = slog.New(slog.NewTextHandler(cfg.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	for i := range cfg.Nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testkit.Wait(tb))
			defer cancel()
			c.Servers[i], errs[i] = bus.StartServer(ctx, bus.ServerConfig{StoreDir: tb.TempDir(), Port: -1, Name: fmt.Sprintf("node-%d", i+1),
				Access: cfg.Access, Seed: cfg.Seed, ReadyTimeout: testkit.Wait(tb), Logger: logger,
				Cluster: bus.ClusterConfig{Name: "godwit", Listen: fmt.Sprintf("127.0.0.1:%d", first+i), Routes: c.Routes,
					Secret: cfg.Secret, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, TLSCA: cfg.TLSCA}})
		})
	}
	wg.Wait()
	for i := range c.Servers {
		if errs[i] != nil {
			tb.Fatalf("node %d: %v", i+1, errs[i])
		}
		tb.Cleanup(func() { c.Kill(i) })
	}
	if cfg.Follow {
		for _, s := range c.Servers {
			ctx, cancel := context.WithCancel(context.Background())
			conn := ConnectOMA(tb, s)
			done := make(chan struct{})
			go func() { defer close(done); _ = s.FollowAccess(ctx, conn) }()
			tb.Cleanup(func() { cancel(); <-done })
		}
	}
	return c
}

// URLs returns the nodes' client URLs, comma-separated, as clients take them.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Node returns the index of the node named name, or -1.
func (c *Cluster) Node(name string) int {
	for i, s := range c.Servers {
		if s.Name() == name {
			return i
		}
	}
	return -1
}

// Kill shuts node i down (its clients are cut off, its routes dropped);
// killing it twice is harmless.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	if c.down[i] {
		c.mu.Unlock()
		return
	}
	c.down[i] = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Servers[i].Shutdown(ctx); err != nil {
		c.tb.Errorf("shut down node %d: %v", i+1, err)
	}
}

// EnsureStreams creates the godwit streams on conn with replicas, trying
// again until the cluster has elected its meta leader (5s per attempt),
// for as long as the test may wait.
func EnsureStreams(tb testing.TB, conn *bus.Conn, l bus.StreamLimits) {
	tb.Helper()
	var last error
	tb.Cleanup(func() {
		if tb.Failed() && last != nil {
			tb.Logf("the last EnsureStreams: %v", last)
		}
	})
	testkit.Eventually(tb, fmt.Sprintf("the streams on %d replicas (a meta leader elected)", l.Replicas), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last = conn.EnsureStreams(ctx, l)
		return last == nil
	})
}
