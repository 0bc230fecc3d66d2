package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/vma/tunnel/tunneltest"
)

// TestDialRefusedIsECONNREFUSED: through the tunnel, an address the key may
// reach where nothing listens (an export while the OMA restarts) fails as a
// direct dial does, wrapping syscall.ECONNREFUSED besides the sshd's
// *ssh.OpenChannelError; an address outside permitopen is refused by policy
// and wraps no errno.
func TestDialRefusedIsECONNREFUSED(t *testing.T) {
	closed := fmt.Sprintf("127.0.0.1:%d", tunneltest.FreePort(t)) // permitted, nothing listens
	r := newRig(t, closed)
	tun := run(t, r.config(t))
	other := startEcho(t) // listening, but outside permitopen
	tests := []struct {
		name       string
		addr       string
		reason     ssh.RejectionReason
		refusedNow bool
	}{
		{name: "nothing listens", addr: closed, reason: ssh.ConnectionFailed, refusedNow: true},
		{name: "outside permitopen", addr: other, reason: ssh.Prohibited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := tun.DialContext(ctx, "tcp", tt.addr)
			if err == nil {
				c.Close()
				t.Fatalf("DialContext(%q) connected, want a refusal", tt.addr)
			}
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) || oce.Reason != tt.reason {
				t.Fatalf("DialContext(%q) = %v, want an *ssh.OpenChannelError with reason %v", tt.addr, err, tt.reason)
			}
			if got := errors.Is(err, syscall.ECONNREFUSED); got != tt.refusedNow {
				t.Errorf("errors.Is(%v, ECONNREFUSED) = %v, want %v", err, got, tt.refusedNow)
			}
		})
	}
}
