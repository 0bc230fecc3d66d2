package tunnel_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/vma/tunnel"
)

// TestNATS: nats.go connects through the tunnel with no local port, and reconnects through it
// after the SSH connection is cut.
func TestNATS(t *testing.T) {
	addr := startNATS(t)
	r := newRig(t, addr)
	tun := run(t, r.config(t))

	nc, err := nats.Connect("nats://"+addr, nats.SetCustomDialer(tunnel.Dialer{Tunnel: tun, Timeout: 5 * time.Second}),
		nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("nats connect through the tunnel: %v", err)
	}
	t.Cleanup(nc.Close)
	ask := func(what string) {
		t.Helper()
		checkFor(t, 10*time.Second, func() error {
			msg, err := nc.Request("echo", []byte(what), time.Second)
			if err != nil {
				return fmt.Errorf("request %s: %w", what, err)
			}
			if string(msg.Data) != what {
				return fmt.Errorf("reply = %q, want %q", msg.Data, what)
			}
			return nil
		})
	}
	sub, err := nc.Subscribe("echo", func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	ask("before")
	r.sshd.KillSessions()
	ask("after")
	if s := tun.State(); s.Reconnects < 1 {
		t.Errorf("State() = %+v, want a reconnect", s)
	}
}

// startNATS starts a plain NATS server on loopback for the test and returns its address.
func startNATS(tb testing.TB) string {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	ns.Start()
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready in 10s")
	}
	return ns.Addr().String()
}
