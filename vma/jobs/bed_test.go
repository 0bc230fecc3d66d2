package jobs_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/tunnels"
	"github.com/godwit/godwit/secret"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
	"github.com/godwit/godwit/vma/vcenter"
	"github.com/godwit/godwit/vma/vcsim"
)

// bed is a simulated vCenter, an OMA with real nbdkit exports and a VMA
// wired as the binaries wire them, reading disks with the datastore
// transport.
type bed struct {
	sim *vcsim.Simulator
	// vc is the vCenter address the VMA is given: the simulator's, or the
	// proxy's in front of it.
	vc    string
	proxy *proxy // nil without bedConfig.proxy
	o     *testbed.OMA
	v     *testbed.VMA     // the VMA in this process; nil with bedConfig.external
	ext   *testbed.Process // the VMA as a process of its own, with bedConfig.external
	sshd  *tunneltest.SSHD // the OMA's sshd, with bedConfig.tunnel
	// vmaURL is the VMA API's base URL.
	vmaURL string
	vms    map[string]events.VM // the OMA's inventory, by name
}

// bedConfig varies a bed.
type bedConfig struct {
	sim   vcsim.Config
	ports int
	// proxy puts a TCP proxy that the test can cut between the VMA and vCenter.
	proxy bool
	oma   func(*omaappliance.Config)
	vma   func(*appliance.Config)
	// external, when set, starts the VMA as a process instead of in this
	// process (vma is then not used).
	external func(testing.TB, *testbed.OMA, *vcsim.Simulator) *testbed.Process
	// tunnel puts the VMA behind a real OpenSSH sshd: it reaches the OMA's
	// bus and exports only through its SSH tunnel, and the tests reach its
	// API only through the tunnel's remote forward on the OMA's side.
	tunnel bool
}

// diskData is what each simulated disk holds: small, so jobs are quick.
const diskData = 3 << 20

func newBed(t testing.TB, bc bedConfig) *bed {
	t.Helper()
	if bc.sim.DiskData == 0 {
		bc.sim.DiskData = diskData
	}
	if bc.ports == 0 {
		bc.ports = 4
	}
	sim := testbed.StartSim(t, bc.sim)
	b := &bed{sim: sim, vc: sim.Host, vms: map[string]events.VM{}}
	if bc.proxy {
		b.proxy = startProxy(t, sim.Host)
		b.vc = b.proxy.addr
	}
	o := testbed.StartOMA(t, testbed.OMAConfig{Ports: bc.ports, Configure: bc.oma})
	b.o = o
	if bc.external != nil {
		b.ext = bc.external(t, o, sim)
		b.vmaURL = b.ext.URL
	} else {
		var through func(*appliance.Config)
		var sshKey string
		if bc.tunnel {
			through, sshKey, b.sshd = behindSSHD(t, o)
		}
		b.v = testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile, SSHPublicKey: sshKey, Configure: func(c *appliance.Config) {
			c.Source = "datastore"
			c.ProgressInterval = 50 * time.Millisecond
			if through != nil {
				through(c)
			}
			if bc.vma != nil {
				bc.vma(c)
			}
		}})
		b.vmaURL = b.v.URL
		if bc.tunnel { // the OMA holds the VMA's API port and forwards into its tunnel
			b.vmaURL = fmt.Sprintf("http://127.0.0.1:%d", b.v.APIPort)
		}
	}
	for _, vm := range o.Discover(map[string]any{"vcenter": b.vc, "username": sim.Username,
		"password": sim.Password, "datacenter": vcsim.Datacenter}) {
		b.vms[vm.Name] = vm
	}
	return b
}

// job is the OMA's view of a job, as GET /api/v1/replications/{id} shows it.
type job struct {
	JobID      string `json:"job_id"`
	State      string `json:"state"`
	LastError  string `json:"last_error"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	Verified   bool   `json:"verified"`
	Disks      []struct {
		Key        int32  `json:"key"`
		VolumePath string `json:"volume_path"`
		BytesTotal int64  `json:"bytes_total"`
		BytesDone  int64  `json:"bytes_done"`
		ChangeID   string `json:"change_id"`
		Verified   bool   `json:"verified"`
		Digest     string `json:"digest"`
	} `json:"disks"`
}

// create creates an initial job for the VM called name on the OMA.
func (b *bed) create(t testing.TB, name string) job {
	t.Helper()
	vm, ok := b.vms[name]
	if !ok {
		t.Fatalf("no VM %s in the inventory", name)
	}
	var j job
	if code := b.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vm.ID},
		"replication_type": "initial"}, &j); code != http.StatusCreated {
		t.Fatalf("create a job for %s = %d %+v", name, code, j)
	}
	return j
}

// startFromOMA starts a job through the OMA's API.
func (b *bed) startFromOMA(t testing.TB, id string) {
	t.Helper()
	var out map[string]any
	if code := b.o.Do(http.MethodPost, "/api/v1/replications/"+id+"/start", map[string]any{"vcenter": b.vc,
		"username": b.sim.Username, "password": b.sim.Password}, &out); code != http.StatusAccepted {
		t.Fatalf("start %s through the OMA = %d %v", id, code, out)
	}
}

// startFromVMA starts a job through the VMA's API, as the seed's step 3 does.
func (b *bed) startFromVMA(t testing.TB, id, path string) {
	t.Helper()
	var out map[string]any
	if code := b.vmaDo(t, http.MethodPost, "/api/v1/replicate", b.replicateBody(id, path), &out); code != http.StatusAccepted {
		t.Fatalf("start %s through the VMA = %d %v", id, code, out)
	}
}

func (b *bed) replicateBody(id string, paths ...string) map[string]any {
	return map[string]any{"job_id": id, "vcenter": b.vc, "username": b.sim.Username, "password": b.sim.Password,
		"vm_paths": paths, "oma_url": b.o.URL}
}

func (b *bed) vmaDo(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	return testbed.Do(t, method, b.vmaURL+path, "", body, out)
}

// get returns the OMA's view of a job.
func (b *bed) get(t testing.TB, id string) job { return getAs[job](t, b, id) }

// getAs returns the OMA's view of a job, decoded into a T.
func getAs[T any](t testing.TB, b *bed, id string) T {
	t.Helper()
	var j T
	if code := b.o.Do(http.MethodGet, "/api/v1/replications/"+id, nil, &j); code != http.StatusOK {
		t.Fatalf("GET job %s = %d", id, code)
	}
	return j
}

// wait waits for a job to reach a final state, as long as the test may
// (testkit.Wait), and returns it.
func (b *bed) wait(t testing.TB, id string) job {
	t.Helper()
	deadline := time.Now().Add(testkit.Wait(t))
	for {
		j := b.get(t, id)
		if j.State == events.JobCompleted || j.State == events.JobFailed || j.State == events.JobCancelled {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still %s\nOMA:\n%s\nVMA:\n%s", id, j.State, b.o.Logs, b.v.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertCopied checks that every export of j holds its source disk: the
// source's data extents byte for byte, and zeros everywhere else.
func (b *bed) assertCopied(t testing.TB, path string, j job) {
	t.Helper()
	for _, d := range j.Disks {
		src, err := b.sim.DiskFile(context.Background(), path, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameDisk(src, d.VolumePath); err != nil {
			t.Errorf("disk %d of %s: %v", d.Key, path, err)
		}
	}
}

// login logs in to the simulator directly.
func (b *bed) login(t testing.TB) *vcenter.Session {
	t.Helper()
	s, err := vcenter.Login(context.Background(), vcenter.Config{Host: b.sim.Host, Username: b.sim.Username, Password: secret.New(b.sim.Password), CAFile: b.sim.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNoSnapshot checks that the VM has no snapshot left.
func (b *bed) assertNoSnapshot(t testing.TB, path string) {
	t.Helper()
	s := b.login(t)
	defer s.Close()
	vm, err := s.FindVM(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := s.Snapshots(context.Background(), vm, "")
	if err != nil || len(snaps) != 0 {
		t.Errorf("%s has snapshots %+v (%v), want none", path, snaps, err)
	}
}

// sameDisk is testkit.SameDisk.
func sameDisk(srcPath, dstPath string) error { return testkit.SameDisk(srcPath, dstPath) }

// dataExtents is testkit.DataExtents.
func dataExtents(f *os.File) ([][2]int64, error) { return testkit.DataExtents(f) }

// proxy forwards TCP connections to a target until cut: then it closes
// every connection and refuses new ones, until mended.
type proxy struct {
	addr   string
	target string
	l      net.Listener

	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), target: target, l: l}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// cut closes every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// mend lets connections through again.
func (p *proxy) mend() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// assertNothingLeft waits until no goroutine of the job engine (runner
// job, copier, NBD client, disk sources) is left and no process names the
// job (the OMA's nbdkit for its export).
func assertNothingLeft(t testing.TB, jobID string) {
	t.Helper()
	deadline := time.Now().Add(min(testkit.Wait(t), testkit.MaxEventually))
	for {
		g, p := engineGoroutines(), processesNaming(jobID)
		if len(g) == 0 && len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left after job %s: processes %v, goroutines:\n%s", jobID, p, strings.Join(g, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// engineGoroutines returns the stacks of goroutines running a job or
// the copy engine under it.
func engineGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, mark := range []string{"godwit/vma/copier", "godwit/vma/nbd.", "godwit/vma/source/", "jobs.(*Runner).run("} {
			if strings.Contains(g, mark) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

// processesNaming returns the command lines of processes that hold s.
func processesNaming(s string) []string {
	var found []string
	for _, p := range testkit.List() {
		if line := p.CommandLine(); strings.Contains(line, s) {
			found = append(found, line)
		}
	}
	return found
}

// behindSSHD starts an OpenSSH sshd for the OMA o and returns how to
// configure a VMA that reaches o only through it, the VMA's SSH key to
// register, and the sshd. The VMA's key is authorized with the restricted
// line the OMA makes (its bus, its NBD pool); its API is forwarded on its
// socket in o's tunnel dir, and o holds its API port.
func behindSSHD(t testing.TB, o *testbed.OMA) (func(*appliance.Config), string, *tunneltest.SSHD) {
	t.Helper()
	return behindSSHDFor(t, o.NATSURL, o.FirstPort, o.LastPort, filepath.Join(o.Dir, "tunnels"))
}

// behindSSHDFor is behindSSHD for an OMA whose NATS is natsURL, whose NBD
// pool is first-last and whose tunnel dir (the VMAs' API sockets) is
// tunnelDir.
func behindSSHDFor(t testing.TB, natsURL string, first, last int, tunnelDir string) (func(*appliance.Config), string, *tunneltest.SSHD) {
	t.Helper()
	sshd := tunneltest.StartSSHD(t)
	keyDir := t.TempDir()
	key, err := tunnel.LoadOrCreateKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	line, err := authkeys.Line(authkeys.Forwards{NATS: strings.TrimPrefix(natsURL, "nats://"), FirstPort: first, LastPort: last},
		tunnel.AuthorizedKey(key), "vma-1")
	if err != nil {
		t.Fatal(err)
	}
	sshd.Authorize(line)
	return func(c *appliance.Config) {
		// The key lives in the data dir; this one was authorized above.
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(keyDir, tunnel.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.DataDir, tunnel.KeyFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c.Tunnel = "ssh://" + sshd.User + "@" + sshd.Addr
		c.TunnelKnownHosts, c.TunnelListen = sshd.KnownHosts, tunnels.SocketPath(tunnelDir, "vma-1")
	}, tunnel.AuthorizedKey(key), sshd
}
