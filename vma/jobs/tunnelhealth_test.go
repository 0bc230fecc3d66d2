package jobs_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestTunnelHealthShowsTheLink: the VMA's health, reached through the
// tunnel's remote forward, shows what the tunnel measures of its link
// through the real sshd: TCP's round trips, bytes per second both ways,
// and the state of the session command that makes sshd set TCP_NODELAY.
func TestTunnelHealthShowsTheLink(t *testing.T) {
	b := newBed(t, bedConfig{tunnel: true})
	var h struct {
		Tunnel struct {
			Connected bool    `json:"connected"`
			RTT       float64 `json:"rtt_ms"`
			MinRTT    float64 `json:"min_rtt_ms"`
			Keepalive float64 `json:"keepalive_rtt_ms"`
			OutPerSec int64   `json:"bytes_out_per_second"`
			InPerSec  int64   `json:"bytes_in_per_second"`
			Channels  int     `json:"channels"`
			NoDelay   string  `json:"no_delay"`
			Cwnd      int     `json:"snd_cwnd"`
		} `json:"tunnel"`
	}
	// Traffic through the tunnel both ways: a discovery.
	var res struct {
		VMs []events.VM `json:"vms"`
	}
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/discover", map[string]any{"vcenter": b.vc, "username": b.sim.Username,
		"password": b.sim.Password, "datacenter": vcsim.Datacenter}, &res); code != http.StatusOK {
		t.Fatalf("discover through the forward = %d", code)
	}
	code := 0
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last health = %d %+v", code, h.Tunnel)
		}
	})
	testkit.Eventually(t, "the tunnel's link measured in health", func() bool {
		code = b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h)
		ts := h.Tunnel
		return code == http.StatusOK && ts.Connected && ts.RTT > 0 && ts.MinRTT > 0 && ts.Keepalive >= 0 && ts.Cwnd > 0 &&
			ts.OutPerSec > 0 && ts.InPerSec > 0 && ts.Channels >= 1 && ts.NoDelay != ""
	})
}

// TestConnectionsFromTheTunnelsRTT: with -nbd-connections 0, each disk's
// NBD connections come from the round trip the tunnel measured and
// -link-rate: a link rate no loopback round trip fills with one channel
// window gives the most (16), where a runner without the tunnel's
// measurement would open one.
func TestConnectionsFromTheTunnelsRTT(t *testing.T) {
	b := newBed(t, bedConfig{tunnel: true, vma: func(c *appliance.Config) {
		c.NBDConnections, c.LinkRate = 0, 1<<50
	}})
	j := b.create(t, threeDisks)
	b.startFromVMA(t, j.JobID, threeDisksPath)
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted || !got.Verified {
		t.Fatalf("job = %s (%s), verified %v", got.State, got.LastError, got.Verified)
	}
	b.assertCopied(t, threeDisksPath, got)
	if logs := b.v.Logs.String(); !strings.Contains(logs, "connections=16") {
		t.Errorf("no disk copied over 16 NBD connections:\n%s", logs)
	}
}
