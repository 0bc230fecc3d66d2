package jobs_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
)

// TestVerifiedByTheOMA: a job through the real tunnel is verified by the
// OMA hashing its volumes: every disk says so, and what came back through
// the tunnel is far less than the disks' data, which reading them back
// would have brought in again.
func TestVerifiedByTheOMA(t *testing.T) {
	b := newBed(t, bedConfig{tunnel: true})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted || !got.Verified {
		t.Fatalf("job = %s (%s), verified %v; want completed and verified", got.State, got.LastError, got.Verified)
	}
	b.assertCopied(t, threeDisksPath, got)
	if n := strings.Count(b.v.Logs.String(), "verified_by_oma=true"); n != len(got.Disks) {
		t.Errorf("%d disks verified by the OMA, want all %d:\n%s", n, len(got.Disks), b.v.Logs)
	}
	var h struct {
		Tunnel struct {
			BytesIn  int64 `json:"bytes_in"`
			BytesOut int64 `json:"bytes_out"`
		} `json:"tunnel"`
	}
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h); code != http.StatusOK {
		t.Fatalf("health = %d", code)
	}
	data := int64(len(got.Disks)) * diskData
	t.Logf("through the tunnel: %d bytes out, %d in, for %d bytes of data", h.Tunnel.BytesOut, h.Tunnel.BytesIn, data)
	if h.Tunnel.BytesOut < data || h.Tunnel.BytesIn >= data/3 {
		t.Errorf("through the tunnel: %d bytes out, %d in; want the %d bytes of data out and far less in (no read-back)",
			h.Tunnel.BytesOut, h.Tunnel.BytesIn, data)
	}
}
