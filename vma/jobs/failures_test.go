package jobs_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/vcsim"
)

// slowly limits every copy of the VMA to rate bytes per second, so that a
// test can act while a job copies.
func slowly(rate int64) func(*appliance.Config) {
	return func(c *appliance.Config) { c.Copy.Limiter = copier.NewLimiter(rate, nil) }
}

// waitCopying waits until the OMA shows the job copying with some bytes done.
func (b *bed) waitCopying(t *testing.T, id string) {
	t.Helper()
	testkit.Eventually(t, "job "+id+" copying", func() bool {
		j := b.get(t, id)
		return j.State == events.JobCopying && j.BytesDone > 0
	})
}

// vmaStatus is the VMA's GET /api/v1/status/{job_id}.
type vmaStatus struct {
	State    string `json:"state"`
	Error    string `json:"error"`
	Snapshot string `json:"snapshot"`
}

func (b *bed) vmaStatus(t *testing.T, id string) vmaStatus {
	t.Helper()
	var st vmaStatus
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/status/"+id, nil, &st); code != http.StatusOK {
		t.Fatalf("VMA status of %s = %d", id, code)
	}
	return st
}

// TestCancelMidCopy: a job cancelled through the OMA while it copies ends
// cancelled, with the reason, within a few seconds, its snapshot removed.
func TestCancelMidCopy(t *testing.T) {
	b := newBed(t, bedConfig{vma: slowly(1 << 20)})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	b.waitCopying(t, j.JobID)
	start := time.Now()
	if code := b.o.Do(http.MethodDelete, "/api/v1/replications/"+j.JobID, nil, nil); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel through the OMA = %d", code)
	}
	defer func() {
		if t.Failed() {
			t.Log(b.v.Logs, b.o.Logs)
		}
	}()
	testkit.Eventually(t, "the VMA's job cancelled", func() bool { return b.vmaStatus(t, j.JobID).State == "cancelled" })
	took := time.Since(start)
	st := b.vmaStatus(t, j.JobID)
	if !strings.Contains(st.Error, "cancelled through the OMA API") || !strings.Contains(st.Error, "copy") || st.Snapshot != "" {
		t.Errorf("VMA status = %+v, want the reason, the step, no snapshot", st)
	}
	got := b.wait(t, j.JobID)
	if got.State != events.JobCancelled {
		t.Errorf("OMA job = %s (%s), want cancelled", got.State, got.LastError)
	}
	b.assertNoSnapshot(t, threeDisksPath)
	assertNothingLeft(t, j.JobID)
	t.Logf("cancelled %s after the request", took)
}

// TestExportFailingWrites: the OMA's exports fail every write (nbdkit's
// error filter): the job fails naming the copy step, the disk and EIO, and
// its snapshot is removed.
func TestExportFailingWrites(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "nbdkit")
	script := "#!/bin/sh\nexec nbdkit --filter=error \"$@\" error-pwrite=EIO error-pwrite-rate=100%\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBed(t, bedConfig{oma: func(c *omaappliance.Config) { c.Nbdkit = wrapper }})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	got := b.wait(t, j.JobID)
	if got.State != events.JobFailed || !strings.Contains(got.LastError, "copy: disk ") || !strings.Contains(got.LastError, "EIO") {
		t.Errorf("job = %s (%s), want failed in the copy of a disk with EIO", got.State, got.LastError)
	}
	if strings.Contains(got.LastError, j.Disks[0].VolumePath) {
		t.Errorf("the error %q shows the volume", got.LastError)
	}
	b.assertNoSnapshot(t, threeDisksPath)
	assertNothingLeft(t, j.JobID)
}

// TestVCenterGoneMidCopy: vCenter stops answering while a job copies. The
// job fails naming the disk and the cause; once vCenter is back, the
// snapshot left behind is removed without anyone asking.
func TestVCenterGoneMidCopy(t *testing.T) {
	b := newBed(t, bedConfig{proxy: true, vma: func(c *appliance.Config) {
		slowly(1 << 20)(c)
		c.CleanupRetry = 100 * time.Millisecond
		c.VCenterTimeout = 2 * time.Second
	}})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	b.waitCopying(t, j.JobID)
	b.proxy.cut()
	got := b.wait(t, j.JobID)
	if got.State != events.JobFailed || !strings.Contains(got.LastError, ": disk ") {
		t.Errorf("job = %s (%s), want failed naming a disk", got.State, got.LastError)
	}
	if !strings.Contains(got.LastError, vcsimSnapshot(j.JobID)) {
		t.Errorf("the failure %q does not say the snapshot is left", got.LastError)
	}
	b.proxy.mend()
	testkit.Eventually(t, "the snapshot removed once vCenter is back", func() bool { return b.vmaStatus(t, j.JobID).Snapshot == "" })
	b.assertNoSnapshot(t, threeDisksPath)
	assertNothingLeft(t, j.JobID)
}

func vcsimSnapshot(job string) string { return "godwit-" + job }

// TestPathNamesAnotherVM: between the job's creation and its start, the
// VM's path came to name another VM. The job fails before any byte is
// written, and no snapshot is taken of the other VM.
func TestPathNamesAnotherVM(t *testing.T) {
	b := newBed(t, bedConfig{})
	j := b.create(t, threeDisks)
	other := "gen-vm-005"
	rename(t, b, "/"+vcsim.Datacenter+"/vm/"+threeDisks, "moved-away")
	rename(t, b, "/"+vcsim.Datacenter+"/vm/"+other, threeDisks)
	b.startFromOMA(t, j.JobID)
	got := b.wait(t, j.JobID)
	if got.State != events.JobFailed || !strings.Contains(got.LastError, "find VM") || !strings.Contains(got.LastError, b.vms[other].ID) {
		t.Fatalf("job = %s (%s), want failed at find VM naming %s", got.State, got.LastError, b.vms[other].ID)
	}
	for _, d := range got.Disks {
		if fi, err := os.Stat(d.VolumePath); err == nil && fi.Size() > 0 {
			if ext, err := dataExtentsOf(d.VolumePath); err != nil || len(ext) != 0 {
				t.Errorf("volume of disk %d holds data %v (%v)", d.Key, ext, err)
			}
		}
	}
	b.assertNoSnapshot(t, threeDisksPath)
}

// rename renames the VM at path.
func rename(t *testing.T, b *bed, path, name string) {
	t.Helper()
	s := b.login(t)
	defer s.Close()
	vm, err := s.FindVM(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	task, err := object.NewVirtualMachine(s.Client, vm.Ref).Rename(context.Background(), name)
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
}

func dataExtentsOf(path string) ([][2]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dataExtents(f)
}

// TestVDDKNotInstalled: with -source vddk on a machine without nbdkit's
// vddk plugin (Debian's nbdkit has none), a job fails at once, naming what
// to install, before it takes a snapshot.
func TestVDDKNotInstalled(t *testing.T) {
	b := newBed(t, bedConfig{vma: func(c *appliance.Config) { c.Source = "vddk" }})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	got := b.wait(t, j.JobID)
	if got.State != events.JobFailed || !strings.Contains(got.LastError, "source vddk") || !strings.Contains(got.LastError, "vddk plugin") {
		t.Errorf("job = %s (%s), want failed naming the vddk plugin to install", got.State, got.LastError)
	}
	b.assertNoSnapshot(t, threeDisksPath)
}

// TestCleanup: POST /api/v1/cleanup/{job_id} stops a running job, and
// removes a snapshot that a failed job left behind, saying what it did.
func TestCleanup(t *testing.T) {
	b := newBed(t, bedConfig{proxy: true, vma: func(c *appliance.Config) {
		slowly(1 << 20)(c)
		c.CleanupRetry = time.Hour // only the API cleans up here
		c.VCenterTimeout = 2 * time.Second
	}})
	type cleaned struct {
		Cancelled        bool     `json:"cancelled"`
		SnapshotsRemoved []string `json:"snapshots_removed"`
		State            string   `json:"state"`
	}

	running := b.create(t, threeDisks)
	b.startFromOMA(t, running.JobID)
	b.waitCopying(t, running.JobID)
	var c cleaned
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/cleanup/"+running.JobID, nil, &c); code != http.StatusOK || !c.Cancelled || c.State != "cancelled" {
		t.Fatalf("cleanup of a running job = %d %+v, want it cancelled", code, c)
	}
	b.assertNoSnapshot(t, threeDisksPath)
	// The OMA learns of the cancel from the VMA's status: only then may the
	// VM have a new job.
	if got := b.wait(t, running.JobID); got.State != events.JobCancelled {
		t.Fatalf("job on the OMA = %s, want cancelled", got.State)
	}

	left := b.create(t, threeDisks)
	b.startFromOMA(t, left.JobID)
	b.waitCopying(t, left.JobID)
	b.proxy.cut()
	if got := b.wait(t, left.JobID); got.State != events.JobFailed {
		t.Fatalf("job = %s, want failed", got.State)
	}
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/cleanup/"+left.JobID, nil, nil); code != http.StatusBadGateway {
		t.Errorf("cleanup while vCenter is unreachable = %d, want 502", code)
	}
	b.proxy.mend()
	c = cleaned{}
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/cleanup/"+left.JobID, nil, &c); code != http.StatusOK || c.Cancelled ||
		len(c.SnapshotsRemoved) != 1 || c.SnapshotsRemoved[0] != "godwit-"+left.JobID || c.State != "failed" {
		t.Fatalf("cleanup of a failed job's snapshot = %d %+v", code, c)
	}
	b.assertNoSnapshot(t, threeDisksPath)
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/cleanup/repl-nope-1", nil, nil); code != http.StatusNotFound {
		t.Errorf("cleanup of an unknown job = %d, want 404", code)
	}
}

// TestVerificationCatchesAChangedBlock: a block of an export changes behind
// the copier's back after it was written and flushed (the test writes into
// the OMA's volume while the OMA's verify limiter holds the hashing until
// it has): the job fails, naming the disk and the offset of the block.
func TestVerificationCatchesAChangedBlock(t *testing.T) {
	gate := &verifyGate{open: make(chan struct{})}
	b := newBed(t, bedConfig{oma: func(c *omaappliance.Config) { c.VerifyLimiter = gate }})
	j := b.create(t, threeDisks)
	first := j.Disks[0]
	b.startFromOMA(t, j.JobID)
	// A byte in the disk's first data extent that is not zero in the source.
	src, err := b.sim.DiskFile(context.Background(), threeDisksPath, first.Key)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := dataExtentsOf(src)
	if err != nil || len(ext) == 0 {
		t.Fatalf("source extents %v, %v", ext, err)
	}
	sf, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, ext[0][1]-ext[0][0])
	_, err = sf.ReadAt(data, ext[0][0])
	sf.Close()
	if err != nil {
		t.Fatal(err)
	}
	i := len(data) / 2
	for data[i] == 0 {
		i++
	}
	at, want := ext[0][0]+int64(i), data[i]
	// Once the copy wrote it (the OMA's hashing waits at the gate), change
	// it behind the copier's back, then let the OMA hash.
	f, err := os.OpenFile(first.VolumePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c [1]byte
	testkit.Eventually(t, "the byte written to the export", func() bool {
		_, err := f.ReadAt(c[:], at)
		return err == nil && c[0] == want
	})
	c[0] ^= 0xff
	if _, err := f.WriteAt(c[:], at); err != nil {
		t.Fatal(err)
	}
	close(gate.open)
	got := b.wait(t, j.JobID)
	m := regexp.MustCompile(fmt.Sprintf(`disk %d: .*verify: bytes at offset (\d+) \(\+(\d+)\)`, first.Key)).FindStringSubmatch(got.LastError)
	if got.State != events.JobFailed || m == nil {
		t.Fatalf("job = %s (%s), want failed naming disk %d and the offset of byte %d", got.State, got.LastError, first.Key, at)
	}
	off, _ := strconv.ParseInt(m[1], 10, 64)
	n, _ := strconv.ParseInt(m[2], 10, 64)
	if at < off || at >= off+n {
		t.Errorf("the failure names [%d, +%d), the changed byte is at %d", off, n, at)
	}
	if !gate.waited.Load() {
		t.Error("the OMA never hashed: the job was not verified by the OMA")
	}
}

// verifyGate is the OMA's verify limiter of a test: every read of a volume
// to answer a verify request waits until open is closed.
type verifyGate struct {
	open   chan struct{}
	waited atomic.Bool
}

func (g *verifyGate) Wait(ctx context.Context, _ int) error {
	g.waited.Store(true)
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestOMARestartMidCopy: the OMA stops and starts again while a job
// copies through the tunnel. While it is down, its NATS port is held by a
// server that does not know the VMA yet, as a restarted OMA's is before it
// has loaded its VMAs: the VMA is refused with "authorization violation"
// again and again (nats.go gave up after two), and re-opening its exports
// is refused by the OMA's sshd (the copy counted that as fatal). The VMA
// keeps trying the bus and the export, goes on from its last checkpoint,
// and the job completes byte-exact; the OMA's state and bytes done never
// go back.
func TestOMARestartMidCopy(t *testing.T) {
	testkit.Long(t) // about 30 s
	b := newBed(t, bedConfig{tunnel: true, vma: func(c *appliance.Config) {
		slowly(1 << 20)(c)
		c.CheckpointInterval = 200 * time.Millisecond
	}})
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	b.waitCopying(t, j.JobID)
	time.Sleep(time.Second)
	b.o.Stop()
	stranger := startBareNATS(t, b.o.NATSURL)
	refusals := func() int { return strings.Count(b.v.Logs.String(), "authorization violation") }
	lostExport := func() int { return strings.Count(b.v.Logs.String(), "the export went away") }
	testkit.Eventually(t, "the VMA refused three times and its exports refused", func() bool {
		return refusals() >= 3 && lostExport() >= 2
	})
	stranger()
	b.o.Start()

	rank := map[string]int{}
	for i, s := range events.JobStates() {
		rank[s] = i
	}
	var last job
	deadline := time.Now().Add(time.Minute)
	for {
		got := b.get(t, j.JobID)
		if rank[got.State] < rank[last.State] || got.BytesDone < last.BytesDone {
			t.Fatalf("the job went back: %s with %d bytes done after %s with %d", got.State, got.BytesDone, last.State, last.BytesDone)
		}
		last = got
		if got.State == events.JobCompleted || got.State == events.JobFailed || got.State == events.JobCancelled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s a minute after the OMA restarted\nVMA:\n%s", got.State, b.v.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last.State != events.JobCompleted {
		t.Fatalf("job = %s (%s), want completed", last.State, last.LastError)
	}
	b.assertCopied(t, threeDisksPath, last)
	b.assertNoSnapshot(t, threeDisksPath)
	var h struct {
		Bus struct {
			Connected  bool   `json:"connected"`
			Reconnects int    `json:"reconnects"`
			LastError  string `json:"last_error"`
		} `json:"bus"`
	}
	if code := b.vmaDo(t, http.MethodGet, "/api/v1/health", nil, &h); code != http.StatusOK || !h.Bus.Connected || h.Bus.Reconnects == 0 || h.Bus.LastError == "" {
		t.Errorf("VMA health after the restart = %d %+v, want connected after a reconnect, with the last error", code, h)
	}
}

// startBareNATS starts a NATS server on natsURL's port that knows no VMA,
// as the OMA's is before it has loaded its VMAs, and returns the function
// that stops it.
func startBareNATS(t *testing.T, natsURL string) func() {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var srv *bus.Server
	// The port was just freed: retry while the old server's socket goes.
	testkit.Eventually(t, "a bare NATS server on "+natsURL, func() bool {
		srv, err = bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: port})
		return err == nil
	})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
}
