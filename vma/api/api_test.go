package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/logtest"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	omastore "github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/vcsim"
	"github.com/godwit/godwit/vma/worker"
)

// stack is an OMA (bus, state, consumers) and a VMA (identity, worker,
// API over real HTTP) on one embedded NATS server, with a simulated vCenter.
type stack struct {
	sim   *vcsim.Simulator
	oma   *bus.Conn
	ctl   *control.Control
	id    identity.Identity
	url   string
	logs  *logtest.Buffer
	omaSt *omastore.Store
}

func newStack(t *testing.T) *stack { return newStackWith(t, stackConfig{}) }

// stackConfig varies a stack: the simulator's inventory, the VMA API's clock.
type stackConfig struct {
	sim vcsim.Config
	now func() time.Time
}

func newStackWith(t *testing.T, sc stackConfig) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, err := vcsim.Start(ctx, sc.sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	dir := t.TempDir()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	st, err := omastore.Open(filepath.Join(dir, "oma.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := control.New(control.Config{DataDir: dir, Logger: log}, st, oma, exports.New(exports.Config{}), srv)
	if err := ctl.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ctl.Run(ctx) }()
	id, err := identity.LoadOrCreate(filepath.Join(dir, "vma"), "vma-1")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ctl.AddVMA(ctx, "vma-1")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := subject.InboxPrefix("vma-1")
	conn := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "vma-1", Source: "/godwit/vma/vma-1",
		NKeySeed: []byte(cred.NKeySeed), InboxPrefix: inbox, Logger: log})
	vst, err := store.Open(filepath.Join(dir, "vma.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vst.Close() })
	w := worker.New(conn, worker.Config{Identity: id, Version: "test", VCenterCAFile: sim.CAFile, VCenterTimeout: 2 * time.Second, Logger: log})
	go func() { _ = w.Run(ctx) }()
	a := api.New(conn, vst, api.Config{Identity: id, Version: "test", DiscoverTimeout: 20 * time.Second, Now: sc.now, Logger: log})
	hs := httptest.NewServer(a.Handler())
	t.Cleanup(hs.Close)
	return &stack{sim: sim, oma: oma, ctl: ctl, id: id, url: hs.URL, logs: logs, omaSt: st}
}

func (s *stack) post(t *testing.T, path string, body any, out any) int {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	default:
		data, _ = json.Marshal(b)
	}
	resp, err := http.Post(s.url+path, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

func (s *stack) discoverBody(password string) map[string]any {
	return map[string]any{"vcenter": s.sim.Host, "username": s.sim.Username, "password": password, "datacenter": "DatabanxDC"}
}

// TestDiscoverThroughTheBus: the VMA API publishes a sealed discover
// request, its worker queries the simulated vCenter, and the result comes
// back to the caller and into the OMA's inventory.
func TestDiscoverThroughTheBus(t *testing.T) {
	s := newStack(t)
	var res struct {
		VCenter events.VCenterRef `json:"vcenter"`
		VMs     []events.VM       `json:"vms"`
	}
	if code := s.post(t, "/api/v1/discover", s.discoverBody(s.sim.Password), &res); code != 200 {
		t.Fatalf("discover = %d", code)
	}
	if res.VCenter.Host != s.sim.Host || res.VCenter.Datacenter != "DatabanxDC" || len(res.VMs) != 13 {
		t.Fatalf("discover = %+v, %d VMs", res.VCenter, len(res.VMs))
	}
	var seed events.VM
	for _, vm := range res.VMs {
		if vm.Name == "PGWINTESTBIOS" {
			seed = vm
		}
	}
	if seed.Path != "/DatabanxDC/vm/PGWINTESTBIOS" || len(seed.Disks) != 2 || len(seed.Networks) != 1 || !strings.HasPrefix(seed.ID, "vm-") {
		t.Errorf("seed VM = %+v", seed)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		inv, _ := s.ctl.Inventory()
		if len(inv) == 13 && inv[0].VMAID == "vma-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the OMA's inventory has %d VMs", len(inv))
		}
		time.Sleep(20 * time.Millisecond)
	}

	body := s.discoverBody(s.sim.Password)
	body["filter"] = "pgwin"
	if code := s.post(t, "/api/v1/discover", body, &res); code != 200 || len(res.VMs) != 1 {
		t.Errorf("filtered discover = %d, %d VMs", code, len(res.VMs))
	}

	var p problem.Problem
	if code := s.post(t, "/api/v1/discover", s.discoverBody("wrong-password"), &p); code != 401 ||
		p.Detail != "vCenter login failed for user administrator@vsphere.local" {
		t.Errorf("wrong password = %d %+v", code, p)
	}
	body = s.discoverBody(s.sim.Password)
	body["datacenter"] = "NoSuchDC"
	if code := s.post(t, "/api/v1/discover", body, &p); code != 404 || p.Field != "datacenter" {
		t.Errorf("unknown datacenter = %d %+v", code, p)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	body = s.discoverBody(s.sim.Password)
	body["vcenter"] = closed
	start := time.Now()
	if code := s.post(t, "/api/v1/discover", body, &p); code != 502 || p.Field != "vcenter" || time.Since(start) > 10*time.Second {
		t.Errorf("unreachable vCenter = %d %+v after %s", code, p, time.Since(start))
	}
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	defer silent.Close()
	body["vcenter"] = silent.Addr().String()
	start = time.Now()
	if code := s.post(t, "/api/v1/discover", body, &p); code != 502 || time.Since(start) > 10*time.Second {
		t.Errorf("silent vCenter = %d %+v after %s", code, p, time.Since(start))
	}
	assertSecretNowhere(t, s, s.sim.Password)
	assertSecretNowhere(t, s, "wrong-password")
}

func TestBadRequests(t *testing.T) {
	s := newStack(t)
	huge := `{"vcenter":"x","username":"u","password":"` + strings.Repeat("p", 1<<20) + `"}`
	for _, c := range []struct {
		path, body, field string
		status            int
	}{
		{"/api/v1/discover", `{"vcenter":`, "", 400},
		{"/api/v1/discover", huge, "", 400},
		{"/api/v1/discover", `{"vcenter":"v","username":"u","password":"p","colour":1}`, "colour", 400},
		{"/api/v1/discover", `{"username":"u","password":"p"}`, "vcenter", 400},
		{"/api/v1/discover", `{"vcenter":"https://v/sdk","username":"u","password":"p"}`, "vcenter", 400},
		{"/api/v1/discover", `{"vcenter":"v","password":"p"}`, "username", 400},
		{"/api/v1/discover", `{"vcenter":"v","username":"u"}`, "password", 400},
		{"/api/v1/replicate", `{"vcenter":"v","username":"u","password":"p","vm_paths":["/a"],"oma_url":"http://x"}`, "job_id", 400},
		{"/api/v1/replicate", `{"job_id":"a.b","vcenter":"v","username":"u","password":"p","vm_paths":["/a"],"oma_url":"http://x"}`, "job_id", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","password":"p","oma_url":"http://x"}`, "vm_paths", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","password":"p","vm_paths":["rel"],"oma_url":"http://x"}`, "vm_paths[0]", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","password":"p","vm_paths":["/a"],"oma_url":"ftp://x"}`, "oma_url", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","password":"p","vm_paths":["/a"]}`, "oma_url", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","vm_paths":["/a"],"oma_url":"http://x"}`, "password", 400},
		{"/api/v1/replicate", `{"job_id":"j","vcenter":"v","username":"u","password":"p","vm_paths":"/a","oma_url":"http://x"}`, "vm_paths", 400},
	} {
		var p problem.Problem
		if code := s.post(t, c.path, c.body, &p); code != c.status || p.Field != c.field || p.Status != c.status {
			t.Errorf("POST %s %.60s = %d %+v, want %d on %q", c.path, c.body, code, p, c.status, c.field)
		}
	}
	assertStreamEmpty(t, s, bus.StreamCommands)
}

// TestReplicatePublishesOneSealedCommand: one request, one command, with a
// password only this VMA's key opens; a repeated request stores nothing more.
func TestReplicatePublishesOneSealedCommand(t *testing.T) {
	s := newStack(t)
	body := map[string]any{"job_id": "repl-vm-143233-1754407216", "vcenter": s.sim.Host, "username": "administrator@vsphere.local",
		"password": "Sup3r-s3cret", "vm_paths": []string{"/DatabanxDC/vm/PGWINTESTBIOS"}, "oma_url": "http://localhost:8082"}
	var out map[string]string
	for range 2 {
		if code := s.post(t, "/api/v1/replicate", body, &out); code != 202 || out["job_id"] != "repl-vm-143233-1754407216" || out["status"] != "accepted" {
			t.Fatalf("replicate = %d %v", code, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := s.oma.JetStream().Stream(ctx, bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := str.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("commands stream holds %d messages, want 1", info.State.Msgs)
	}
	m, err := str.GetLastMsgForSubject(ctx, "godwit.replicate.command.vma-1")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.Event
	var cmd events.ReplicateCommand
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Decode(&cmd) != nil {
		t.Fatalf("command %s", m.Data)
	}
	if cmd.JobID != "repl-vm-143233-1754407216" || cmd.VMAID != "vma-1" || cmd.VMPaths[0] != "/DatabanxDC/vm/PGWINTESTBIOS" || cmd.OMAURL != "http://localhost:8082" {
		t.Errorf("command = %+v", cmd)
	}
	if pw, err := seal.Open(s.id.Key, cmd.Password); err != nil || string(pw) != "Sup3r-s3cret" {
		t.Errorf("sealed password opens to %q, %v", pw, err)
	}
	other, _ := seal.NewKeyPair()
	if _, err := seal.Open(other, cmd.Password); err == nil {
		t.Error("another key opens the password")
	}
	body["vm_paths"] = []string{"/DatabanxDC/vm/other"}
	var p problem.Problem
	if code := s.post(t, "/api/v1/replicate", body, &p); code != 409 || p.Field != "job_id" {
		t.Errorf("same job, other VMs = %d %+v", code, p)
	}
	assertSecretNowhere(t, s, "Sup3r-s3cret")
}

func TestHealth(t *testing.T) {
	clock := newClock()
	s := newStackWith(t, stackConfig{now: clock.Now})
	clock.Add(90 * time.Second)
	resp, err := http.Get(s.url + "/api/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status    string `json:"status"`
		VMAID     string `json:"vma_id"`
		Version   string `json:"version"`
		Uptime    int64  `json:"uptime_seconds"`
		PublicKey string `json:"public_key"`
		Bus       struct {
			Connected bool   `json:"connected"`
			State     string `json:"state"`
		} `json:"bus"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.VMAID != "vma-1" || h.Version != "test" || h.Uptime != 90 || h.PublicKey != s.id.PublicKey() || !h.Bus.Connected || h.Bus.State != "connected" {
		t.Errorf("health = %+v", h)
	}
}

// assertSecretNowhere checks the logs, every stream and the OMA's state.
func assertSecretNowhere(t *testing.T, s *stack, secret string) {
	t.Helper()
	if strings.Contains(s.logs.String(), secret) {
		t.Errorf("the logs hold the secret %q", secret)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name := range s.oma.JetStream().StreamNames(ctx).Name() {
		str, _ := s.oma.JetStream().Stream(ctx, name)
		info, _ := str.Info(ctx)
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			if m, err := str.GetMsg(ctx, seq); err == nil && bytes.Contains(m.Data, []byte(secret)) {
				t.Errorf("stream %s message %d holds the secret", name, seq)
			}
		}
	}
}

func assertStreamEmpty(t *testing.T, s *stack, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, _ := s.oma.JetStream().Stream(ctx, name)
	if info, _ := str.Info(ctx); info.State.Msgs != 0 {
		t.Errorf("stream %s holds %d messages after rejected requests", name, info.State.Msgs)
	}
}

// TestOMAInitiatedDiscovery: the OMA seals the password to the key the
// VMA announced in its heartbeat, and the VMA's worker answers.
func TestOMAInitiatedDiscovery(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		vmas, _ := s.ctl.VMAs()
		if len(vmas) == 1 && vmas[0].PublicKey == s.id.PublicKey() {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the OMA never learned the VMA's key")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := s.ctl.Discover(ctx, control.DiscoverRequest{
		Cred:       control.Credentials{VCenter: s.sim.Host, Username: s.sim.Username, Password: s.sim.Password},
		Datacenter: "DatabanxDC", Filter: "gen-vm-00",
	})
	if err != nil || len(res.VMs) != 9 || res.VMAID != "vma-1" {
		t.Fatalf("OMA discover = %d VMs from %s, %v", len(res.VMs), res.VMAID, err)
	}
	_, err = s.ctl.Discover(ctx, control.DiscoverRequest{
		Cred: control.Credentials{VCenter: s.sim.Host, Username: s.sim.Username, Password: "nope"},
	})
	if control.KindOf(err) != control.Unauthorized {
		t.Errorf("OMA discover with a wrong password = %v", err)
	}
	assertSecretNowhere(t, s, s.sim.Password)
}
