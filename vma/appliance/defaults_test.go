package appliance

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/godwit/godwit/vma/tunnel"
)

// TestAPIListensOnLoopbackByDefault: a VMA configured without an API
// address serves on 127.0.0.1:8081, reachable only from its own machine
// (and, in production, through the tunnel's forward on the OMA). It checks
// the address the VMA would listen on without taking the port, which a
// running make run holds.
func TestAPIListensOnLoopbackByDefault(t *testing.T) {
	cfg, err := Config{DataDir: t.TempDir(), NATSSeed: []byte("seed")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(cfg.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || port != "8081" {
		t.Errorf("the VMA API listens at %s by default, want 127.0.0.1:8081", cfg.APIAddr)
	}
}

// TestNATSAddrsStayOnThePrimary: the bus's addresses, as nats.go dials
// them, are what the tunnel keeps on its primary connection.
func TestNATSAddrsStayOnThePrimary(t *testing.T) {
	tests := []struct {
		urls string
		want string
	}{
		{"nats://127.0.0.1:4222", "[127.0.0.1:4222]"},
		{"nats://127.0.0.1", "[127.0.0.1:4222]"},
		{"nats://127.0.0.1:4222, nats://[::1]:4223", "[127.0.0.1:4222 [::1]:4223]"},
		{"", "[]"},
	}
	for _, tt := range tests {
		if got := fmt.Sprint(natsAddrs(tt.urls)); got != tt.want {
			t.Errorf("natsAddrs(%q) = %s, want %s", tt.urls, got, tt.want)
		}
	}
}

// TestTunnelConnectionsChecked: a negative count or one above the
// tunnel's maximum is refused, naming the setting.
func TestTunnelConnectionsChecked(t *testing.T) {
	for _, n := range []int{-1, tunnel.MaxConnections + 1} {
		_, err := Config{DataDir: t.TempDir(), NATSSeed: []byte("seed"), TunnelConnections: n}.withDefaults()
		if err == nil || !strings.Contains(err.Error(), "tunnel connections") {
			t.Errorf("TunnelConnections %d: %v, want an error naming tunnel connections", n, err)
		}
	}
}
