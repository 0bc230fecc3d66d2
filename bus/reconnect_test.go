package bus_test

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
)

// waitFor polls cond every 10ms until it holds, for at most 30 s (a bound
// for a stuck test, not a timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startServerOn starts a server on port (-1: a free one) granting access.
func startServerOn(t *testing.T, port int, access bus.Access) *bus.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: port, Access: access})
	if err != nil {
		t.Fatalf("start nats server: %v", err)
	}
	t.Cleanup(func() { shutdown(t, srv) })
	return srv
}

func shutdown(t *testing.T, srv *bus.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// TestReconnectsAfterAuthorizationErrors: a restarted server that does not
// know a client's user yet (the OMA loads its VMAs after its server
// starts) refuses its reconnects with "authorization violation". The
// client keeps trying however many times it is refused, and is back once
// the server knows the user; its health says what happened meanwhile.
func TestReconnectsAfterAuthorizationErrors(t *testing.T) {
	vma := bustest.NewUser(t)
	access := bus.Access{VMAs: map[string]string{"vma-1": vma.PublicKey}}
	first := startServerOn(t, -1, access)
	u, err := url.Parse(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	inbox, _ := subject.InboxPrefix("vma-1")
	logs := &testkit.Buffer{}
	c := bustest.Connect(t, first.ClientURL(), bus.ClientConfig{Name: "vma-1", NKeySeed: vma.Seed, InboxPrefix: inbox,
		ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})

	shutdown(t, first)
	second := startServerOn(t, port, bus.Access{}) // restarted, the VMA's user not loaded yet
	// nats.go closed the connection for good after the second refusal.
	refusals := func() int { return strings.Count(logs.String(), "authorization violation") }
	lost := func() bool {
		select {
		case <-c.Lost():
			return true
		default:
			return false
		}
	}
	waitFor(t, "three refusals", func() bool { return refusals() >= 3 || lost() })
	if lost() {
		t.Fatalf("the connection was closed for good after %d refusals", refusals())
	}
	if h := c.Health(); h.Connected || !strings.Contains(h.LastError, "authorization violation") || h.LastErrorAt == nil {
		t.Errorf("Health() while refused = %+v, want not connected, with the authorization violation", h)
	}
	if err := second.SetAccess(access); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client back", c.Connected)
	if h := c.Health(); h.State != "connected" || h.Reconnects == 0 {
		t.Errorf("Health() after = %+v, want connected with a reconnect counted", h)
	}
}

// TestLost: Lost is closed when the connection closes for good without
// Close or Drain, and stays open when it is closed on purpose.
func TestLost(t *testing.T) {
	srv := startServerOn(t, -1, bus.Access{})
	for _, tt := range []struct {
		name  string
		close func(c *bus.Conn)
		lost  bool
	}{
		{name: "nats.go gives up", close: func(c *bus.Conn) { c.NATS().Close() }, lost: true},
		{name: "Close", close: (*bus.Conn).Close},
		{name: "Drain", close: func(c *bus.Conn) { _ = c.Drain() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan struct{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", OnState: func(s bus.State, _ error) {
				if s == bus.Closed {
					close(closed)
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			tt.close(c)
			<-closed // Lost is settled before Closed is reported
			select {
			case <-c.Lost():
				if !tt.lost {
					t.Fatal("Lost() closed after closing on purpose")
				}
			default:
				if tt.lost {
					t.Fatal("Lost() still open after the connection closed for good")
				}
			}
		})
	}
}
