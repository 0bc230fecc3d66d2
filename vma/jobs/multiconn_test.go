package jobs_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/tunnel"
)

// tunnelConnections reads the tunnel's connections from the VMA's health,
// through the remote forward (the primary connection).
func (b *bed) tunnelConnections(t testing.TB) []tunnel.ConnState {
	t.Helper()
	var h struct {
		Tunnel struct {
			Connections []tunnel.ConnState `json:"connections"`
		} `json:"tunnel"`
	}
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h); code != http.StatusOK {
		t.Fatalf("health = %d", code)
	}
	return h.Tunnel.Connections
}

// TestDataConnectionLossResumes: the VMA's tunnel keeps three SSH
// connections to the OMA's sshd; the copies' NBD channels ride the two data
// connections. Killing the sshd process of the data connection that
// carries channels breaks only those: the copies on it resume from their
// checkpoints, the job completes byte-exact, the data connection is made
// again, and the primary (the bus, the API's forward) never dropped, so no
// outage is reported.
func TestDataConnectionLossResumes(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, bedConfig{tunnel: true, vma: func(c *appliance.Config) {
		slowly(2 << 20)(c) // copying long enough to be cut
		c.CheckpointInterval = 200 * time.Millisecond
		c.TunnelConnections = 3
	}})
	testkit.Eventually(t, "three tunnel connections up", func() bool {
		conns := b.tunnelConnections(t)
		up := 0
		for _, c := range conns {
			if c.Connected {
				up++
			}
		}
		return len(conns) == 3 && up == 3
	})
	j := b.create(t, threeDisks)
	b.startFromVMA(t, j.JobID, threeDisksPath)
	b.waitCopying(t, j.JobID)
	var victim tunnel.ConnState
	testkit.Eventually(t, "a data connection carrying a copy's channel", func() bool {
		for _, c := range b.tunnelConnections(t)[1:] {
			if c.Channels > 0 && c.BytesOut > 0 {
				victim = c
				return true
			}
		}
		return false
	})
	if n, err := b.sshd.KillConnection(victim.LocalAddr); err != nil || n == 0 {
		t.Fatalf("kill the sshd of the data connection from %s: %d killed, %v", victim.LocalAddr, n, err)
	}
	got := b.wait(t, j.JobID)
	// A disk that resumed from a recorded checkpoint is verified only in
	// parts, so the job is not "verified" unless the cut came before the
	// first checkpoint (on a busy machine it rarely does); byte-exact it
	// must be either way.
	if got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s); want completed", got.State, got.LastError)
	}
	b.assertCopied(t, threeDisksPath, got)
	if !strings.Contains(b.v.Logs.String(), "the export went away") {
		t.Error("no copy lost its export when its data connection was killed: the kill tested nothing")
	}
	testkit.Eventually(t, "the killed data connection made again, the primary never lost", func() bool {
		conns := b.tunnelConnections(t)
		reconnected := false
		for _, c := range conns[1:] {
			reconnected = reconnected || (c.Connected && c.Reconnects > 0)
		}
		return conns[0].Connected && conns[0].Reconnects == 0 && reconnected
	})
	if evs := b.events(t, bus.StreamTunnel, "godwit.tunnel.vma-1"); len(evs) != 0 {
		t.Errorf("%d outage events after a data connection was lost, want none: %v", len(evs), fmt.Sprint(evs))
	}
}
