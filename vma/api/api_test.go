package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	omaappliance "github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/vcsim"
)

// stack is an OMA and a VMA as their binaries wire them (oma/appliance,
// vma/appliance, through testbed), with a simulated vCenter.
type stack struct {
	sim  *vcsim.Simulator
	o    *testbed.OMA
	oma  *bus.Conn // an admin connection to the OMA's NATS
	id   identity.Identity
	url  string
	logs bothLogs
}

// bothLogs is what the OMA and the VMA logged.
type bothLogs struct{ oma, vma *testkit.Buffer }

func (l bothLogs) String() string { return l.oma.String() + l.vma.String() }

// newStack starts the stack; configure adjusts the VMA's configuration.
func newStack(t *testing.T, configure ...func(*appliance.Config)) *stack {
	var sc stackConfig
	if len(configure) > 0 {
		sc.vma = configure[0]
	}
	return newStackWith(t, sc)
}

// stackConfig varies a stack: the simulator's inventory, the OMA's and
// the VMA's configuration.
type stackConfig struct {
	sim vcsim.Config
	oma func(*omaappliance.Config)
	vma func(*appliance.Config)
}

func newStackWith(t *testing.T, sc stackConfig) *stack {
	t.Helper()
	sim := testbed.StartSim(t, sc.sim)
	o := testbed.StartOMA(t, testbed.OMAConfig{Configure: sc.oma})
	vc := testbed.VMAConfig{VCenterCAFile: sim.CAFile, Configure: sc.vma}
	v := testbed.StartVMA(t, o, vc)
	id, err := identity.LoadOrCreate(v.Dir+"/vma", v.ID)
	if err != nil {
		t.Fatal(err)
	}
	return &stack{sim: sim, o: o, oma: o.Admin, id: id, url: v.URL, logs: bothLogs{o.Logs, v.Logs}}
}

// createJob discovers the datacenter through the VMA, waits for the OMA's
// inventory to hold the VM called name, and creates an initial job for it
// on the OMA.
func (s *stack) createJob(t *testing.T, name string) string {
	t.Helper()
	var res struct {
		VMs []events.VM `json:"vms"`
	}
	if code := s.post(t, "/api/v1/discover", s.discoverBody(s.sim.Password), &res); code != 200 {
		t.Fatalf("discover = %d", code)
	}
	var id string
	for _, vm := range res.VMs {
		if vm.Name == name {
			id = vm.ID
		}
	}
	var job struct {
		JobID string `json:"job_id"`
	}
	testkit.Eventually(t, "a job for "+name, func() bool {
		return s.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": id},
			"replication_type": "initial"}, &job) == http.StatusCreated
	})
	return job.JobID
}

// post sends body (a string as it is, anything else as JSON) to the VMA
// API and decodes a JSON answer into out.
func (s *stack) post(t *testing.T, path string, body any, out any) int {
	t.Helper()
	return testbed.Do(t, http.MethodPost, s.url+path, "", body, out)
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
	testkit.Eventually(t, "the OMA's inventory of 13 VMs from vma-1", func() bool {
		var inv struct {
			VMs []struct {
				VMAID string `json:"vma_id"`
			} `json:"vms"`
		}
		s.o.Do("GET", "/api/v1/vms", nil, &inv)
		return len(inv.VMs) == 13 && inv.VMs[0].VMAID == "vma-1"
	})

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
	if code := s.post(t, "/api/v1/discover", body, &p); code != 502 || p.Field != "vcenter" {
		t.Errorf("unreachable vCenter = %d %+v after %s", code, p, time.Since(start))
	}
	assertSecretNowhere(t, s, s.sim.Password)
	assertSecretNowhere(t, s, "wrong-password")
}

// TestSilentVCenter: a vCenter that accepts and never answers is 502 after
// the VMA's VCenterTimeout, not 504 after its (longer) discover timeout.
func TestSilentVCenter(t *testing.T) {
	s := newStack(t, func(c *appliance.Config) { c.VCenterTimeout = time.Second })
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	body := s.discoverBody(s.sim.Password)
	body["vcenter"] = silent.Addr().String()
	start := time.Now()
	var p problem.Problem
	if code := s.post(t, "/api/v1/discover", body, &p); code != 502 || p.Field != "vcenter" {
		t.Errorf("silent vCenter = %d %+v after %s, want 502 naming vcenter", code, p, time.Since(start))
	}
}

func TestBadRequests(t *testing.T) {
	s := newStack(t)
	huge := `{"vcenter":"x","username":"u","password":"` + strings.Repeat("p", 1<<20) + `"}`
	for _, c := range []struct {
		path, body, field string
		status            int
	}{
		{"/api/v1/discover", `{"vcenter":`, "", 400},
		{"/api/v1/discover", huge, "", 413},
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

// TestReplicatePublishesOneSealedCommand: one request queues the job in the
// OMA's queue, which sends one command back, with a password only this
// VMA's key opens; a repeated request queues nothing more.
func TestReplicatePublishesOneSealedCommand(t *testing.T) {
	s := newStack(t)
	jobID := s.createJob(t, "PGWINTESTBIOS")
	body := map[string]any{"job_id": jobID, "vcenter": s.sim.Host, "username": "administrator@vsphere.local",
		"password": "Sup3r-s3cret", "vm_paths": []string{"/DatabanxDC/vm/PGWINTESTBIOS"}, "oma_url": "http://localhost:8082"}
	// The first answer is the job's state when it was queued; the repeat
	// answers its state by then, which the queue may already have moved on.
	var first map[string]string
	for i := range 2 {
		var out map[string]string
		if code := s.post(t, "/api/v1/replicate", body, &out); code != 202 || out["job_id"] != jobID || out["status"] != "accepted" {
			t.Fatalf("replicate = %d %v", code, out)
		}
		if i == 0 {
			first = out
		}
	}
	elsewhere := maps.Clone(body)
	elsewhere["vm_paths"] = []string{"/DatabanxDC/vm/other"}
	var p problem.Problem
	if code := s.post(t, "/api/v1/replicate", elsewhere, &p); code != 409 || p.Field != "vm_paths" {
		t.Errorf("same job, other VMs = %d %+v", code, p)
	}
	// The job waits in the OMA's queue, which sends the command back to
	// the VMA: once.
	if first["state"] != "queued" {
		t.Errorf("replicate answered state %q, want queued (in the OMA's queue)", first["state"])
	}
	testkit.Eventually(t, "the OMA's queue sending the command", func() bool {
		return bustest.Count(t, s.oma, bus.StreamCommands, "godwit.replicate.command.vma-1") > 0
	})
	time.Sleep(time.Second) // a full pass of the queue
	if n := bustest.Count(t, s.oma, bus.StreamCommands, "godwit.replicate.command.vma-1"); n != 1 {
		t.Fatalf("commands stream holds %d commands, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := s.oma.JetStream().Stream(ctx, bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
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
	if cmd.JobID != jobID || cmd.VMAID != "vma-1" || cmd.VMPaths[0] != "/DatabanxDC/vm/PGWINTESTBIOS" || cmd.OMAURL != "http://localhost:8082" {
		t.Errorf("command = %+v", cmd)
	}
	if pw, err := seal.Open(s.id.Key, cmd.Password); err != nil || string(pw) != "Sup3r-s3cret" {
		t.Errorf("sealed password opens to %q, %v", pw, err)
	}
	other, _ := seal.NewKeyPair()
	if _, err := seal.Open(other, cmd.Password); err == nil {
		t.Error("another key opens the password")
	}
	assertSecretNowhere(t, s, "Sup3r-s3cret")
}

func TestHealth(t *testing.T) {
	clock := testkit.NewClock()
	s := newStackWith(t, stackConfig{vma: func(c *appliance.Config) { c.Now = clock.Now }})
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
	if h.Status != "ok" || h.VMAID != "vma-1" || h.Version != appliance.Version || h.Uptime != 90 || h.PublicKey != s.id.PublicKey() || !h.Bus.Connected || h.Bus.State != "connected" {
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
	var res struct {
		VMAID string `json:"vma_id"`
		VMs   []struct{ ID string }
	}
	body := map[string]any{"vcenter": s.sim.Host, "username": s.sim.Username, "password": s.sim.Password,
		"datacenter": "DatabanxDC", "filter": "gen-vm-00"}
	if code := s.o.Do("POST", "/api/v1/discover", body, &res); code != 200 || len(res.VMs) != 9 || res.VMAID != "vma-1" {
		t.Fatalf("OMA discover = %d: %d VMs from %s", code, len(res.VMs), res.VMAID)
	}
	var p problem.Problem
	body["password"] = "nope"
	if code := s.o.Do("POST", "/api/v1/discover", body, &p); code != 401 || p.Field != "username" {
		t.Errorf("OMA discover with a wrong password = %d %+v, want 401", code, p)
	}
	assertSecretNowhere(t, s, s.sim.Password)
}

// send sends a request with the given headers (Content-Type defaults to
// application/json when there is a body) and decodes a JSON answer.
func (s *stack) send(t *testing.T, method, path string, header map[string]string, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

// TestGuardIsWired: the VMA API refuses cross-origin requests and bodies
// that are not JSON, and publishes nothing for them.
func TestGuardIsWired(t *testing.T) {
	s := newStack(t, func(c *appliance.Config) { c.API.AllowOrigins = []string{"https://ui.example.com"} })
	body := `{"job_id":"j-1","vcenter":"v","username":"u","password":"p","vm_paths":["/a"],"oma_url":"ftp://x"}`
	for _, c := range []struct {
		name   string
		header map[string]string
		status int
		field  string
	}{
		{"other origin", map[string]string{"Origin": "https://evil.example"}, 403, "Origin"},
		{"null origin", map[string]string{"Origin": "null"}, 403, "Origin"},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site"},
		{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"},
		{"no content type", map[string]string{"Content-Type": ""}, 415, "Content-Type"},
		{"text", map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type"},
		{"json utf-8", map[string]string{"Content-Type": "application/json; charset=utf-8"}, 400, "oma_url"},
		{"own origin", map[string]string{"Origin": s.url}, 400, "oma_url"},
		{"allowed origin", map[string]string{"Origin": "https://UI.example.com/"}, 400, "oma_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p problem.Problem
			if code := s.send(t, "POST", "/api/v1/replicate", c.header, body, &p); code != c.status || p.Field != c.field {
				t.Errorf("POST with %v = %d %+v, want %d naming %q", c.header, code, p, c.status, c.field)
			}
		})
	}
	assertStreamEmpty(t, s, bus.StreamCommands)
}

// TestToken: with a token configured, discover and replicate need it (the
// scheme in any case), and health tells only status, id and version
// without it.
func TestToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("vma-s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := api.ReadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(c *appliance.Config) { c.API.TokenSHA256 = sum })
	bad := `{"job_id":"j-1","vcenter":"v","username":"u","password":"p","vm_paths":["/a"],"oma_url":"ftp://x"}`
	for _, c := range []struct {
		auth   string
		status int
	}{
		{"", 401}, {"Bearer ", 401}, {"Bearer wrong", 401}, {"Basic dm1hOnMzY3JldA==", 401}, {"vma-s3cret-token", 401},
		{"Bearer vma-s3cret-token", 400}, {"bearer vma-s3cret-token", 400}, {"BEARER  vma-s3cret-token ", 400},
	} {
		for _, path := range []string{"/api/v1/replicate", "/api/v1/discover"} {
			var p problem.Problem
			code := s.send(t, "POST", path, map[string]string{"Authorization": c.auth}, bad, &p)
			if path == "/api/v1/discover" && code == 400 {
				continue // discover refuses the body for another reason
			}
			if code != c.status || (code == 401 && p.Field != "Authorization") {
				t.Errorf("POST %s with %q = %d %+v, want %d", path, c.auth, code, p, c.status)
			}
		}
	}
	// GET /metrics needs the token too.
	if code := s.send(t, "GET", "/metrics", nil, "", nil); code != 401 {
		t.Errorf("GET /metrics without the token = %d, want 401", code)
	}
	if code := s.send(t, "GET", "/metrics", map[string]string{"Authorization": "Bearer vma-s3cret-token"}, "", nil); code != 200 {
		t.Errorf("GET /metrics with the token = %d, want 200", code)
	}
	var h map[string]any
	if code := s.send(t, "GET", "/api/v1/health", nil, "", &h); code != 200 || len(h) != 3 || h["vma_id"] != "vma-1" || h["status"] != "ok" || h["version"] != appliance.Version {
		t.Errorf("health without the token = %d %v, want only status, vma_id, version", code, h)
	}
	if code := s.send(t, "GET", "/api/v1/health", map[string]string{"Authorization": "Bearer wrong"}, "", &h); code != 200 || len(h) != 3 {
		t.Errorf("health with a wrong token = %d %v, want only status, vma_id, version", code, h)
	}
	if code := s.send(t, "GET", "/api/v1/health", map[string]string{"Authorization": "Bearer vma-s3cret-token"}, "", &h); code != 200 || h["public_key"] != s.id.PublicKey() || h["bus"] == nil {
		t.Errorf("health with the token = %d %v, want the full answer", code, h)
	}
	if strings.Contains(s.logs.String(), "vma-s3cret-token") {
		t.Error("the logs hold the token")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := api.ReadTokenFile(empty); err == nil {
		t.Error("ReadTokenFile(empty file) succeeded")
	}
}

// TestVCenterAllow: a discovery or replication for a vCenter outside the
// allow list is 403 naming vcenter, publishes nothing and connects nowhere.
func TestVCenterAllow(t *testing.T) {
	elsewhere, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer elsewhere.Close()
	var dials atomic.Int32
	go func() {
		for {
			c, err := elsewhere.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	s := newStack(t, func(c *appliance.Config) {
		c.VCenterAllow = []string{"vcenter.example.com", "127.0.0.2:443", "localhost"}
	})
	// The simulator listens on 127.0.0.1:<port>, which the list does not hold.
	refused := []string{elsewhere.Addr().String(), s.sim.Host, "vcenter.example.org", "127.0.0.2:8443"}
	for _, vc := range refused {
		body := s.discoverBody(s.sim.Password)
		body["vcenter"] = vc
		var p problem.Problem
		if code := s.post(t, "/api/v1/discover", body, &p); code != 403 || p.Field != "vcenter" {
			t.Errorf("discover at %s = %d %+v, want 403 naming vcenter", vc, code, p)
		}
		rep := map[string]any{"job_id": "repl-1", "vcenter": vc, "username": "u", "password": "p", "vm_paths": []string{"/a"}, "oma_url": "http://localhost:8082"}
		if code := s.post(t, "/api/v1/replicate", rep, &p); code != 403 || p.Field != "vcenter" {
			t.Errorf("replicate at %s = %d %+v, want 403 naming vcenter", vc, code, p)
		}
	}
	assertStreamEmpty(t, s, bus.StreamDiscovery)
	assertStreamEmpty(t, s, bus.StreamCommands)

	// A host on the list without a port allows any port. The answer comes
	// from the worker, which handles requests in order: it has then seen
	// everything published before.
	_, simPort, _ := net.SplitHostPort(s.sim.Host)
	body := s.discoverBody(s.sim.Password)
	body["vcenter"] = "LocalHost:" + simPort
	var p problem.Problem
	if code := s.post(t, "/api/v1/discover", body, &p); code == 403 || code == 504 {
		t.Errorf("discover at an allowed vCenter = %d %+v", code, p)
	}
	// The OMA's discovery reaches the worker over the bus, past the VMA's
	// API: the worker holds to the list too and says why.
	for _, vc := range []string{elsewhere.Addr().String(), s.sim.Host} {
		body := s.discoverBody(s.sim.Password)
		body["vcenter"] = vc
		if code := s.o.Do("POST", "/api/v1/discover", body, &p); code != 400 || !strings.Contains(p.Detail, "-vcenter-allow") {
			t.Errorf("OMA discover at %s = %d %+v, want 400 naming -vcenter-allow", vc, code, p)
		}
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("the VMA connected %d times to a vCenter outside the allow list", n)
	}
}

// TestFieldLimits: every field of discover and replicate is held to the
// limits of the event schema at the edge: 400 naming the field, nothing
// published, never a failed publish.
func TestFieldLimits(t *testing.T) {
	s := newStack(t)
	long := strings.Repeat("x", 5000)
	discover := func(k, v string) map[string]any {
		b := map[string]any{"vcenter": "vcenter.example.com", "username": "u", "password": "p", "datacenter": "dc", "filter": "f"}
		b[k] = v
		return b
	}
	replicate := func(k string, v any) map[string]any {
		b := map[string]any{"job_id": "repl-1", "vcenter": "vcenter.example.com", "username": "u", "password": "p",
			"vm_paths": []string{"/dc/vm/a"}, "oma_url": "http://localhost:8082"}
		b[k] = v
		return b
	}
	for _, c := range []struct {
		name, path string
		body       map[string]any
		field      string
	}{
		{"discover vcenter", "/api/v1/discover", discover("vcenter", long), "vcenter"},
		{"discover username", "/api/v1/discover", discover("username", long), "username"},
		{"discover password", "/api/v1/discover", discover("password", long+long), "password"},
		{"discover datacenter", "/api/v1/discover", discover("datacenter", long), "datacenter"},
		{"discover filter", "/api/v1/discover", discover("filter", long), "filter"},
		{"replicate job_id", "/api/v1/replicate", replicate("job_id", strings.Repeat("j", 129)), "job_id"},
		{"replicate vcenter", "/api/v1/replicate", replicate("vcenter", long), "vcenter"},
		{"replicate username", "/api/v1/replicate", replicate("username", long), "username"},
		{"replicate password", "/api/v1/replicate", replicate("password", long+long), "password"},
		{"replicate vm_paths", "/api/v1/replicate", replicate("vm_paths", []string{"/a", "/" + long}), "vm_paths[1]"},
		{"replicate oma_url", "/api/v1/replicate", replicate("oma_url", "http://x/"+long), "oma_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p problem.Problem
			if code := s.post(t, c.path, c.body, &p); code != 400 || p.Field != c.field {
				t.Errorf("POST %s = %d %+v, want 400 naming %s", c.path, code, p, c.field)
			}
		})
	}
	assertStreamEmpty(t, s, bus.StreamDiscovery)
	assertStreamEmpty(t, s, bus.StreamCommands)
}
