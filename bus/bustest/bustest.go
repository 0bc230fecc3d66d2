// Package bustest starts real embedded NATS servers and connections for
// tests and benchmarks, cleaned up with the test.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/seal"
)

// StartServer starts an embedded server with JetStream on a free loopback
// port, with its store in dir (a new temporary one when dir is ""), and the
// godwit streams created. It is shut down when the test ends.
func StartServer(tb testing.TB, dir string, access bus.Access) *bus.Server {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: dir, Port: -1, Access: access})
	if err != nil {
		tb.Fatalf("start nats server: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	oma := ConnectOMA(tb, srv)
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
		tb.Fatalf("ensure streams: %v", err)
	}
	return srv
}

// ConnectOMA connects to srv in-process as the OMA; closed when the test ends.
func ConnectOMA(tb testing.TB, srv *bus.Server) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Source: "/godwit/oma"})
	if err != nil {
		tb.Fatalf("connect oma: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Connect connects to url with cfg; closed when the test ends.
func Connect(tb testing.TB, url string, cfg bus.ClientConfig) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, url, cfg)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(c.Close)
	return c
}

// ConnectVMA connects to url as VMA id, as a VMA does: with seed, its own
// inbox prefix and confined to its account; closed when the test ends.
func ConnectVMA(tb testing.TB, url, id string, seed []byte) *bus.Conn {
	tb.Helper()
	inbox, err := subject.InboxPrefix(id)
	if err != nil {
		tb.Fatal(err)
	}
	return Connect(tb, url, bus.ClientConfig{Name: id, Source: "/godwit/vma/" + id, NKeySeed: seed, InboxPrefix: inbox, Confined: true})
}

// User is a new NKey user.
type User struct {
	Seed      []byte // the secret seed ("SU...")
	PublicKey string // what the server is told ("U...")
}

// NewUser creates an NKey user.
func NewUser(tb testing.TB) User {
	tb.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatalf("create nkey: %v", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		tb.Fatal(err)
	}
	return User{Seed: seed, PublicKey: pub}
}

// SeedFile writes the user's seed to a 0600 file in a temporary directory,
// for the nats CLI's --nkey, and returns its path.
func (u User) SeedFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "user.nk")
	if err := os.WriteFile(path, u.Seed, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Count returns how many messages stream holds on subjects matching filter.
func Count(tb testing.TB, conn *bus.Conn, stream, filter string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := conn.JetStream().Stream(ctx, stream)
	// A server reloading its accounts (a VMA let in) has no JetStream API
	// for a moment: ask again.
	for errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		str, err = conn.JetStream().Stream(ctx, stream)
	}
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		tb.Fatalf("stream %s info: %v", stream, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// Pull asks the durable consumer of stream for one message without
// waiting, as a VMA's connection may (it has no other JetStream API): it
// returns nil when the durable answered, with a message or "no messages",
// and an error when nobody did (the durable, or the right to pull from
// it, is missing).
func Pull(ctx context.Context, conn *bus.Conn, stream, durable string) error {
	msg, err := conn.NATS().RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+durable, []byte(`{"batch":1,"no_wait":true}`))
	if err != nil {
		return fmt.Errorf("pull %s/%s: %w", stream, durable, err)
	}
	if st := msg.Header.Get("Status"); st != "" && st != "404" && st != "408" {
		return fmt.Errorf("pull %s/%s: status %s %s", stream, durable, st, msg.Header.Get("Description"))
	}
	return nil
}

// AskDiscovery has the OMA publish a discover request of vmaID's for
// vcenter, through conn as the VMA's API does (a VMA's confined connection
// submits it), and returns its request id: the OMA takes into its
// inventory only the results of requests it published.
func AskDiscovery(tb testing.TB, conn *bus.Conn, vmaID, vcenter string) string {
	tb.Helper()
	kp, err := seal.NewKeyPair()
	if err != nil {
		tb.Fatal(err)
	}
	sealed, err := seal.Seal(seal.EncodeKey(kp.Public), []byte("test"))
	if err != nil {
		tb.Fatal(err)
	}
	dr := &events.DiscoverRequest{RequestID: events.NewID(), VMAID: vmaID, VCenter: vcenter, Username: "test", Password: sealed}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.SubmitDiscover(ctx, dr); err != nil { // asked again while the OMA does not serve yet
		tb.Fatalf("ask the OMA for a discovery: %v", err)
	}
	return dr.RequestID
}
