package appliance

import (
	"net"
	"testing"
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
