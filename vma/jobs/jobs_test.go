package jobs_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// threeDisks is a generated VM with three disks, CBT on, powered on.
const (
	threeDisks     = "gen-vm-003"
	threeDisksPath = "/" + vcsim.Datacenter + "/vm/" + threeDisks
)

// TestInitialJob copies a three-disk VM with data and holes, started from
// the OMA and, separately, from the VMA's API: every export equals its
// source disk, the OMA's job is completed with the right bytes, no
// snapshot remains, and the VMA answers for the job from its own state.
func TestInitialJob(t *testing.T) {
	for _, from := range []string{"oma", "vma"} {
		t.Run("from "+from, func(t *testing.T) {
			b := newBed(t, bedConfig{})
			j := b.create(t, threeDisks)
			if len(j.Disks) != 3 {
				t.Fatalf("the job has %d disks, want 3", len(j.Disks))
			}
			if from == "oma" {
				b.startFromOMA(t, j.JobID)
			} else {
				b.startFromVMA(t, j.JobID, threeDisksPath)
			}
			got := b.wait(t, j.JobID)
			if got.State != events.JobCompleted {
				t.Fatalf("job %s = %s (%s), want completed\nVMA:\n%s", j.JobID, got.State, got.LastError, b.v.Logs)
			}
			if got.BytesDone != got.BytesTotal || got.BytesTotal < 3*diskData {
				t.Errorf("job bytes done %d of %d, want all of at least %d", got.BytesDone, got.BytesTotal, 3*diskData)
			}
			if !got.Verified {
				t.Error("the job is not verified")
			}
			for _, d := range got.Disks {
				if d.ChangeID == "" || d.BytesDone != d.BytesTotal || !d.Verified || !strings.HasPrefix(d.Digest, "sha256:") {
					t.Errorf("disk %d: change id %q, %d of %d bytes, verified %v, digest %q", d.Key, d.ChangeID, d.BytesDone, d.BytesTotal, d.Verified, d.Digest)
				}
			}
			b.assertCopied(t, threeDisksPath, got)
			b.assertNoSnapshot(t, threeDisksPath)
			var path []string
			for _, ev := range b.events(t, bus.StreamJobs, "godwit.job.state.vma-1."+j.JobID) {
				var sc events.JobStateChanged
				if err := ev.Decode(&sc); err != nil {
					t.Fatal(err)
				}
				path = append(path, sc.To)
			}
			if want := []string{"queued", "snapshotting", "copying", "verifying", "finalizing", "completed"}; !slices.Equal(path, want) {
				t.Errorf("the OMA's job went through %v, want %v", path, want)
			}

			var st struct {
				State   string   `json:"state"`
				VMPaths []string `json:"vm_paths"`
			}
			if code := b.vmaDo(t, http.MethodGet, "/api/v1/status/"+j.JobID, nil, &st); code != 200 || st.State != "completed" || st.VMPaths[0] != threeDisksPath {
				t.Errorf("VMA status = %d %+v", code, st)
			}
			var pr struct {
				State      string  `json:"state"`
				Percent    float64 `json:"percent"`
				BytesTotal int64   `json:"bytes_total"`
				BytesDone  int64   `json:"bytes_done"`
				Disks      []any   `json:"disks"`
				Average    int64   `json:"average_rate_bytes_per_second"`
			}
			if code := b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &pr); code != 200 || pr.State != "completed" ||
				pr.Percent != 100 || pr.BytesDone != got.BytesTotal || len(pr.Disks) != 3 || pr.Average <= 0 {
				t.Errorf("VMA progress = %d %+v", code, pr)
			}
		})
	}
}

// TestReplicateChecksTheJobWithTheOMA: the VMA's API asks the OMA about a
// job before it accepts it.
func TestReplicateChecksTheJobWithTheOMA(t *testing.T) {
	b := newBed(t, bedConfig{})
	j := b.create(t, threeDisks)
	for _, tc := range []struct {
		name  string
		body  map[string]any
		code  int
		field string
	}{
		{"unknown job", b.replicateBody("repl-nope-1", threeDisksPath), 404, "job_id"},
		{"another VM's path", b.replicateBody(j.JobID, "/"+vcsim.Datacenter+"/vm/"+vcsim.SeedVM), 409, "vm_paths"},
		{"two paths", b.replicateBody(j.JobID, threeDisksPath, "/"+vcsim.Datacenter+"/vm/"+vcsim.SeedVM), 409, "vm_paths"},
	} {
		var p problem.Problem
		if code := b.vmaDo(t, http.MethodPost, "/api/v1/replicate", tc.body, &p); code != tc.code || p.Field != tc.field {
			t.Errorf("%s: replicate = %d %+v, want %d naming %s", tc.name, code, p, tc.code, tc.field)
		}
	}
	for _, path := range []string{"/api/v1/status/", "/api/v1/progress/"} {
		var p problem.Problem
		if code := b.vmaDo(t, http.MethodGet, path+j.JobID, nil, &p); code != 404 || !strings.Contains(p.Detail, j.JobID) {
			t.Errorf("GET %s of a job never started = %d %+v, want 404", path, code, p)
		}
	}
	if got := b.get(t, j.JobID); got.State != events.JobPending {
		t.Errorf("after refused requests the job is %s, want pending", got.State)
	}
}

// TestThroughTheTunnel runs the seed's four steps with the VMA behind a real
// OpenSSH sshd, its key restricted to the OMA's bus, its NBD pool and its
// API port: discovery through the VMA's API as the OMA reaches it (the
// tunnel's remote forward), the job created on the OMA, started through
// the forward, the disks copied into the exports through the tunnel.
func TestThroughTheTunnel(t *testing.T) {
	b := newBed(t, bedConfig{tunnel: true})
	var res struct {
		VMs []events.VM `json:"vms"`
	}
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/discover", map[string]any{"vcenter": b.vc, "username": b.sim.Username,
		"password": b.sim.Password, "datacenter": vcsim.Datacenter}, &res); code != http.StatusOK || len(res.VMs) == 0 {
		t.Fatalf("discover through the forward = %d, %d VMs", code, len(res.VMs))
	}
	j := b.create(t, threeDisks)
	b.startFromVMA(t, j.JobID, threeDisksPath)
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted || !got.Verified {
		t.Fatalf("job through the tunnel = %s (%s), verified %v", got.State, got.LastError, got.Verified)
	}
	b.assertCopied(t, threeDisksPath, got)
	var h struct {
		Tunnel struct {
			Connected bool  `json:"connected"`
			BytesOut  int64 `json:"bytes_out"`
		} `json:"tunnel"`
	}
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h); code != http.StatusOK || !h.Tunnel.Connected || h.Tunnel.BytesOut < 3*diskData {
		t.Errorf("health = %d %+v, want the tunnel connected, the disks' bytes through it", code, h)
	}
}

// TestSeveralNBDConnectionsThroughTheTunnel copies each disk over four NBD
// connections (-nbd-connections), each an SSH channel of its own: while the
// job copies, the tunnel's health counts them besides the bus's; the job
// completes byte-exact and verified, and the channels are closed after it.
func TestSeveralNBDConnectionsThroughTheTunnel(t *testing.T) {
	b := newBed(t, bedConfig{tunnel: true, vma: func(c *appliance.Config) {
		slowly(2 << 20)(c) // copying long enough to be seen
		c.NBDConnections = 4
	}})
	channels := func() int {
		var h struct {
			Tunnel struct {
				Channels int `json:"channels"`
			} `json:"tunnel"`
		}
		b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h)
		return h.Tunnel.Channels
	}
	before := channels()
	j := b.create(t, threeDisks)
	b.startFromVMA(t, j.JobID, threeDisksPath)
	testkit.Eventually(t, "four more channels for a disk's copy", func() bool { return channels() >= before+4 })
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted || !got.Verified {
		t.Fatalf("job over four connections a disk = %s (%s), verified %v", got.State, got.LastError, got.Verified)
	}
	b.assertCopied(t, threeDisksPath, got)
	testkit.Eventually(t, "the copies' channels closed", func() bool { return channels() == before })
}

// TestTunnelCutMidCopy kills the VMA's sshd session while a job copies
// through the tunnel. The tunnel comes back, the bus and the remote forward
// with it, the copy goes on from its last checkpoint, and the job completes
// byte-exact.
func TestTunnelCutMidCopy(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, bedConfig{tunnel: true, vma: func(c *appliance.Config) {
		slowly(1 << 20)(c)
		c.CheckpointInterval = 200 * time.Millisecond
	}})
	j := b.create(t, threeDisks)
	b.startFromVMA(t, j.JobID, threeDisksPath)
	b.waitCopying(t, j.JobID)
	time.Sleep(time.Second)
	if n := b.sshd.KillSessions(); n == 0 {
		t.Fatal("no sshd session to kill")
	}
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s), want completed", got.State, got.LastError)
	}
	b.assertCopied(t, threeDisksPath, got)
	if !strings.Contains(b.v.Logs.String(), "the export went away") {
		t.Error("no copy lost its export when the tunnel was cut: the cut tested nothing")
	}
	var h struct {
		Tunnel struct {
			Connected  bool `json:"connected"`
			Reconnects int  `json:"reconnects"`
		} `json:"tunnel"`
	}
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h); code != http.StatusOK || !h.Tunnel.Connected || h.Tunnel.Reconnects == 0 {
		t.Errorf("health through the forward after the cut = %d %+v, want connected after a reconnect", code, h)
	}

	// No progress event is stored twice: each has its own id and a
	// sequence number above the one before.
	ids := map[string]bool{}
	var prev uint64
	for i, ev := range b.events(t, bus.StreamProgress, "godwit.progress.vma-1."+j.JobID) {
		var p events.Progress
		if err := ev.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if ids[ev.ID] || (i > 0 && p.Seq <= prev) {
			t.Errorf("progress event %d (id %s, seq %d) after seq %d: stored twice or out of order", i, ev.ID, p.Seq, prev)
		}
		ids[ev.ID], prev = true, p.Seq
	}

	// The outage is recorded: an event on the TUNNEL stream, published
	// once the bus was back, and a sum on the OMA's record of the VMA.
	type vmaView struct {
		ID     string `json:"id"`
		Tunnel *struct {
			Outages int                 `json:"outages"`
			Last    events.TunnelOutage `json:"last"`
		} `json:"tunnel"`
	}
	var vma vmaView
	testkit.Eventually(t, "the outage on the OMA's record of the VMA", func() bool {
		var list struct {
			VMAs []vmaView `json:"vmas"`
		}
		b.o.Do(http.MethodGet, "/api/v1/vmas", nil, &list)
		if len(list.VMAs) == 1 {
			vma = list.VMAs[0]
		}
		return vma.Tunnel != nil
	})
	evs := b.events(t, bus.StreamTunnel, "godwit.tunnel.vma-1")
	if len(evs) != 1 || vma.Tunnel.Outages != 1 {
		t.Fatalf("%d outage events, %d on the VMA's record; want 1", len(evs), vma.Tunnel.Outages)
	}
	var o events.TunnelOutage
	if err := evs[0].Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o != vma.Tunnel.Last || o.DownSeconds <= 0 || o.Cause == "" || o.Attempts < 1 || o.Reconnects != 1 {
		t.Errorf("outage event %+v, on the VMA's record %+v", o, vma.Tunnel.Last)
	}
}
