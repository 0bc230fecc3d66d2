package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

// streamState is what a hostile reply could change: per stream, its first
// sequence and message count; per consumer, that it exists.
type streamState struct {
	first, msgs uint64
	consumers   []string
}

func snapshot(t *testing.T, c *bus.Conn) map[string]streamState {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	out := map[string]streamState{}
	for name := range c.JetStream().StreamNames(ctx).Name() {
		s, err := c.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cons []string
		for n := range s.ConsumerNames(ctx).Name() {
			cons = append(cons, n)
		}
		slices.Sort(cons)
		out[name] = streamState{first: info.State.FirstSeq, msgs: info.State.Msgs, consumers: cons}
	}
	return out
}

// TestVMARepliesNeverReachJetStream is the review's attack: a VMA publishes,
// pulls and acks with reply subjects that name JetStream API calls (purge
// or delete each stream, delete each consumer). The server answers a pull
// that expires, an ack and a stored publish on the reply subject with the
// rights of the account the reply is in: a VMA's account, where no
// JetStream API exists. Every stream keeps its messages, every consumer
// stays, and the OMA still reads its durables.
func TestVMARepliesNeverReachJetStream(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 5*time.Minute)
	srv, oma, users := startWithVMAs(ctx, t, "vma-1", "vma-2")
	u := users[0]
	for _, cfg := range bus.StreamConfigs(bus.StreamLimits{}) {
		if err := oma.EnsureConsumer(ctx, cfg.Name, bus.OMADurable); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []events.Payload{
		progress("vma-1", "job-1", 1), progress("vma-2", "job-2", 1),
		&events.ReplicateCancel{JobID: "job-1", VMAID: "vma-1"}, &events.ReplicateCancel{JobID: "job-1", VMAID: "vma-1"},
		&events.ReplicateCancel{JobID: "job-2", VMAID: "vma-2"},
		&events.JobStateChanged{JobID: "job-1", VMAID: "vma-1", From: "pending", To: "queued"},
		&events.Heartbeat{VMAID: "vma-1", Version: "test", PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", StartedAt: time.Now(), UptimeSeconds: 1},
	} {
		if _, err := oma.Publish(ctx, p); err != nil {
			t.Fatalf("publish %T: %v", p, err)
		}
	}
	before := snapshot(t, oma)

	var replies []string
	for _, name := range slices.Sorted(maps.Keys(before)) {
		replies = append(replies, "$JS.API.STREAM.PURGE."+name, "$JS.API.STREAM.DELETE.BOGUS", "$JS.API.STREAM.DELETE."+name)
		for _, c := range before[name].consumers {
			replies = append(replies, "$JS.API.CONSUMER.DELETE."+name+"."+c)
		}
	}
	replies = append(replies, "$JS.API.STREAM.PURGE.X", "$JS.API.CONSUMER.DELETE.X.Y")

	// An ack subject of vma-1's own: a message pulled and left unacked.
	vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u.Seed)
	pulled, err := vma.NATS().Request("$JS.API.CONSUMER.MSG.NEXT."+bus.StreamCommands+"."+bus.VMADurable("vma-1"),
		[]byte(`{"batch":1,"expires":5000000000}`), 10*time.Second)
	if err != nil || pulled.Reply == "" {
		t.Fatalf("pull vma-1's command: %v (%v)", err, pulled)
	}
	expiring, _ := json.Marshal(map[string]any{"batch": 1, "expires": 50 * time.Millisecond})

	seed := u.SeedFile(t)
	for _, reply := range replies {
		for _, args := range [][]string{
			{"pub", "godwit.progress.vma-1.job-1", "{}", "--reply", reply},                                                                  // a publish the stream stores
			{"pub", "$JS.API.CONSUMER.MSG.NEXT." + bus.StreamDiscovery + "." + bus.VMADurable("vma-1"), string(expiring), "--reply", reply}, // a pull that expires
			{"pub", pulled.Reply, "+WPI", "--reply", reply},                                                                                 // an ack (in progress)
		} {
			if out, err := natsCLI(t, srv.ClientURL(), seed, args...); err != nil {
				t.Fatalf("nats %v: %v\n%s", args, err, out)
			}
		}
	}
	// Its own pull again: the server handles a connection's messages in
	// order, and the expiring pulls have long expired once this one has.
	if _, err := vma.NATS().Request("$JS.API.CONSUMER.MSG.NEXT."+bus.StreamDiscovery+"."+bus.VMADurable("vma-1"),
		[]byte(`{"batch":1,"expires":200000000}`), 10*time.Second); err != nil && err != nats.ErrTimeout {
		t.Logf("last pull: %v", err)
	}

	after := snapshot(t, oma)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("stream %s was deleted", name)
		case a.first != b.first || a.msgs < b.msgs:
			t.Errorf("stream %s lost messages: first %d -> %d, %d -> %d messages", name, b.first, a.first, b.msgs, a.msgs)
		case fmt.Sprint(a.consumers) != fmt.Sprint(b.consumers):
			t.Errorf("stream %s consumers %v -> %v", name, b.consumers, a.consumers)
		}
	}
	// The OMA's durable still delivers.
	got := make(chan string, 8)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = oma.Consume(cctx, bus.StreamJobs, bus.OMADurable, func(_ context.Context, ev events.Event, _ events.Payload) error {
			got <- ev.Type
			return nil
		})
	}()
	select {
	case typ := <-got:
		if typ != events.TypeJobStateChanged {
			t.Errorf("OMA's JOBS durable delivered %s", typ)
		}
	case <-ctx.Done():
		t.Fatal("the OMA's durable on JOBS delivers nothing")
	}
}

// TestVMAAddedToARunningServer registers a VMA on a running server, as the
// OMA does, and has it publish and pull through its account's imports at
// once; then a second VMA, with the first still working.
func TestVMAAddedToARunningServer(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, time.Minute)
	vmas := map[string]string{}
	for _, id := range []string{"vma-1", "vma-2"} {
		u := bustest.NewUser(t)
		vmas[id] = u.PublicKey
		if err := srv.SetAccess(bus.Access{VMAs: maps.Clone(vmas)}); err != nil {
			t.Fatal(err)
		}
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-1", VMAID: id}); err != nil {
			t.Fatal(err)
		}
		vma := bustest.ConnectVMA(t, srv.ClientURL(), id, u.Seed)
		if _, err := vma.Publish(ctx, progress(id, "job-1", 1)); err != nil {
			t.Fatalf("%s publishes: %v", id, err)
		}
		got := make(chan string, 1)
		cctx, stop := context.WithCancel(ctx)
		go func() {
			_ = vma.Consume(cctx, bus.StreamCommands, bus.VMADurable(id), func(_ context.Context, _ events.Event, p events.Payload) error {
				got <- p.(*events.ReplicateCancel).VMAID
				return nil
			})
		}()
		select {
		case who := <-got:
			if who != id {
				t.Errorf("%s consumed %s's command", id, who)
			}
		case <-ctx.Done():
			t.Fatalf("%s got no command", id)
		}
		stop()
	}
}

// TestStoreFromBeforeAccountsIsKept starts a plain JetStream server, as the
// OMA ran before accounts, stores an event, and then the OMA's server on
// the same directory: the stream and its message are in the OMA's account.
func TestStoreFromBeforeAccountsIsKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	old.Start()
	if !old.ReadyForConnections(30 * time.Second) {
		t.Fatal("old server not ready")
	}
	nc, err := nats.Connect(old.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, time.Minute)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamJobs, Subjects: []string{subject.AllJobs}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "godwit.job.created.vma-1.job-1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	srv := bustest.StartServer(t, dir, bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	if n := bustest.Count(t, oma, bus.StreamJobs, subject.AllJobs); n != 1 {
		t.Errorf("JOBS holds %d messages after the move, want 1", n)
	}
}

// TestMaxConnections: the server takes ServerConfig.MaxConnections
// clients, the OMA's own included, and refuses one more.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, time.Minute)
	admin := bustest.NewUser(t)
	srv, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: -1, MaxConnections: 3,
		Access: bus.Access{Admins: []string{admin.PublicKey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	// The server's own gate holds one connection.
	kp, err := nkeys.FromSeed(admin.Seed)
	if err != nil {
		t.Fatal(err)
	}
	auth := nats.Nkey(admin.PublicKey, kp.Sign)
	var conns []*nats.Conn
	for range 2 {
		nc, err := nats.Connect(srv.ClientURL(), auth)
		if err != nil {
			t.Fatalf("connection within the cap: %v", err)
		}
		conns = append(conns, nc)
	}
	if nc, err := nats.Connect(srv.ClientURL(), auth); err == nil {
		nc.Close()
		t.Error("a connection over the cap was taken")
	}
	for _, nc := range conns {
		nc.Close()
	}
}
