package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/httpserver/httpservertest"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/appliance"
)

// TestHealthDetailsNeedAToken: without a valid token health says only
// status and version; with one (the scheme in any case), everything.
func TestHealthDetailsNeedAToken(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	o.addVMA("vma-1")
	for _, auth := range []string{"", "Bearer gwt_wrong", "Basic dXNlcjpwYXNz", o.token} {
		var h map[string]any
		if code := o.doRaw("GET", "/api/v1/health", auth, nil, &h); code != 200 || len(h) != 2 || h["status"] != "ok" || h["version"] != api.Version {
			t.Errorf("health with %q = %d %v, want only status and version", auth, code, h)
		}
	}
	for _, auth := range []string{"Bearer " + o.token, "bearer " + o.token, "BEARER " + o.token} {
		var h map[string]any
		code := o.doRaw("GET", "/api/v1/health", auth, nil, &h)
		vmas, _ := h["connected_vmas"].([]any)
		if code != 200 || h["nats"] == nil || h["uptime_seconds"] == nil || len(vmas) != 1 || vmas[0] != "vma-1" {
			t.Errorf("health with %q = %d %v, want the details", auth, code, h)
		}
	}
}

func TestBearerSchemeInAnyCase(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	for _, auth := range []string{"bearer " + o.token, "BEARER " + o.token, "Bearer  " + o.token + " "} {
		if code := o.doRaw("GET", "/api/v1/vms", auth, nil, nil); code != 200 {
			t.Errorf("GET /api/v1/vms with %q = %d, want 200", auth, code)
		}
	}
}

// TestTokensOnARunningOMA: tokens are created (shown once), listed
// (never the secret or its hash) and revoked (401 at once) over the API.
func TestTokensOnARunningOMA(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	var created struct {
		Name      string    `json:"name"`
		Token     string    `json:"token"`
		CreatedAt time.Time `json:"created_at"`
	}
	if code := o.do("POST", "/api/v1/tokens", map[string]string{"name": "ci"}, &created); code != 201 || created.Name != "ci" || !strings.HasPrefix(created.Token, "gwt_") || created.CreatedAt.IsZero() {
		t.Fatalf("create = %d %+v", code, created)
	}
	if code := o.doRaw("GET", "/api/v1/vms", "Bearer "+created.Token, nil, nil); code != 200 {
		t.Errorf("the new token = %d, want 200", code)
	}
	for _, c := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"taken", `{"name":"ci"}`, 409, "name"},
		{"taken by the harness", `{"name":"initial"}`, 409, "name"},
		{"empty", `{"name":""}`, 400, "name"},
		{"missing", `{}`, 400, "name"},
		{"space", `{"name":"a b"}`, 400, "name"},
		{"slash", `{"name":"a/b"}`, 400, "name"},
		{"too long", `{"name":"` + strings.Repeat("n", 65) + `"}`, 400, "name"},
		{"unknown field", `{"name":"x","scope":"all"}`, 400, "scope"},
		{"not a string", `{"name":7}`, 400, "name"},
	} {
		var p problem
		if code := o.doRaw("POST", "/api/v1/tokens", "Bearer "+o.token, []byte(c.body), &p); code != c.status || p.Field != c.field {
			t.Errorf("create %s = %d %+v, want %d naming %q", c.name, code, p, c.status, c.field)
		}
	}
	raw := o.getRaw(t, "/api/v1/tokens")
	var list struct {
		Tokens []struct {
			Name       string     `json:"name"`
			CreatedAt  time.Time  `json:"created_at"`
			LastUsedAt *time.Time `json:"last_used_at"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Tokens) != 2 || list.Tokens[0].Name != "ci" || list.Tokens[1].Name != "initial" {
		t.Fatalf("list = %s (%v)", raw, err)
	}
	if list.Tokens[0].LastUsedAt == nil || list.Tokens[1].LastUsedAt == nil || list.Tokens[0].CreatedAt.IsZero() {
		t.Errorf("list = %s, want creation and last use of both", raw)
	}
	if bytes.Contains(raw, []byte(created.Token)) || bytes.Contains(raw, []byte(o.token)) || bytes.Contains(raw, []byte("hash")) {
		t.Errorf("the list shows a secret or a hash: %s", raw)
	}
	if code := o.do("DELETE", "/api/v1/tokens/ci", nil, nil); code != 204 {
		t.Errorf("revoke = %d, want 204", code)
	}
	var p problem
	if code := o.doRaw("GET", "/api/v1/vms", "Bearer "+created.Token, nil, &p); code != 401 || p.Field != "Authorization" {
		t.Errorf("a revoked token = %d %+v, want 401", code, p)
	}
	if code := o.do("DELETE", "/api/v1/tokens/ci", nil, &p); code != 404 || p.Field != "name" {
		t.Errorf("revoke again = %d %+v, want 404", code, p)
	}
	if code := o.doRaw("POST", "/api/v1/tokens", "", []byte(`{"name":"x"}`), &p); code != 401 {
		t.Errorf("create without a token = %d, want 401", code)
	}
	// The harness's token revokes itself: the next request is refused.
	if code := o.do("DELETE", "/api/v1/tokens/initial", nil, nil); code != 204 {
		t.Errorf("revoke own token = %d", code)
	}
	if code := o.do("GET", "/api/v1/tokens", nil, &p); code != 401 {
		t.Errorf("after revoking itself = %d, want 401", code)
	}
}

// getRaw GETs path with the test token and returns the body.
func (o *omaUnderTest) getRaw(t *testing.T, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", o.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return b
}

// TestGuardOnTheOMA: cross-origin requests and bodies that are not JSON
// are refused before anything happens; an allowed origin goes through.
func TestGuardOnTheOMA(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	console := newOMA(t, 1, func(c *appliance.Config) { c.API.AllowOrigins = []string{"https://console.example.com"} })
	body := `{"id":"vma-9"}`
	for _, c := range []struct {
		name, url string
		header    map[string]string
		status    int
	}{
		{"harness: other origin", o.url, map[string]string{"Origin": "https://evil.example"}, 403},
		{"harness: cross-site", o.url, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"harness: form", o.url, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"harness: console", o.url, map[string]string{"Origin": "https://console.example.com"}, 403},
		{"configured: console", console.url, map[string]string{"Origin": "https://console.example.com"}, 201},
		{"configured: own origin", console.url, map[string]string{"Origin": console.url}, 409},
		{"configured: other origin", console.url, map[string]string{"Origin": "https://evil.example"}, 403},
	} {
		req, _ := http.NewRequest("POST", c.url+"/api/v1/vmas", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+o.token)
		if c.url == console.url {
			req.Header.Set("Authorization", "Bearer "+console.token)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s = %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
}

// TestFieldLimits: every field of discover, replications, start and vmas
// is held to the limits of its event schema at the edge: 400 naming the
// field, nothing published and nothing changed, never a failed publish.
func TestFieldLimits(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20))
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j); code != 201 {
		t.Fatalf("create = %d", code)
	}
	long := strings.Repeat("x", 5000)
	with := func(base map[string]any, k string, val any) map[string]any {
		b := map[string]any{}
		for k, v := range base {
			b[k] = v
		}
		b[k] = val
		return b
	}
	disc := map[string]any{"vcenter": "vcenter.test", "username": "u", "password": "p", "datacenter": "dc", "filter": "f", "vma_id": "vma-1"}
	start := map[string]any{"vcenter": "vcenter.test", "username": "u", "password": "p"}
	src := func(k, val string) map[string]any {
		vm := map[string]any{"id": "vm-1", "name": "VM-vm-1", "path": "/DatabanxDC/vm/VM-vm-1"}
		vm[k] = val
		return map[string]any{"source_vm": vm, "replication_type": "initial"}
	}
	startPath := "/api/v1/replications/" + j.JobID + "/start"
	for _, c := range []struct {
		name, path string
		body       map[string]any
		field      string
	}{
		{"discover vcenter", "/api/v1/discover", with(disc, "vcenter", long), "vcenter"},
		{"discover username", "/api/v1/discover", with(disc, "username", long), "username"},
		{"discover password", "/api/v1/discover", with(disc, "password", long+long), "password"},
		{"discover datacenter", "/api/v1/discover", with(disc, "datacenter", long), "datacenter"},
		{"discover filter", "/api/v1/discover", with(disc, "filter", long), "filter"},
		{"discover vma_id", "/api/v1/discover", with(disc, "vma_id", strings.Repeat("v", 129)), "vma_id"},
		{"discover vma_id pattern", "/api/v1/discover", with(disc, "vma_id", "vma.1"), "vma_id"},
		{"discover timeout_seconds", "/api/v1/discover", with(disc, "timeout_seconds", 601), "timeout_seconds"},
		{"replication source_vm.id", "/api/v1/replications", src("id", long), "source_vm.id"},
		{"replication source_vm.name", "/api/v1/replications", src("name", long), "source_vm.name"},
		{"replication source_vm.path", "/api/v1/replications", src("path", long), "source_vm.path"},
		{"replication vma_id", "/api/v1/replications", with(src("name", "n"), "vma_id", "vma 1"), "vma_id"},
		{"replication replication_type", "/api/v1/replications", with(src("name", "n"), "replication_type", long), "replication_type"},
		{"start vcenter", startPath, with(start, "vcenter", long), "vcenter"},
		{"start username", startPath, with(start, "username", long), "username"},
		{"start password", startPath, with(start, "password", long+long), "password"},
		{"vmas id", "/api/v1/vmas", map[string]any{"id": long}, "id"},
		{"vmas id pattern", "/api/v1/vmas", map[string]any{"id": "vma>"}, "id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p problem
			if code := o.do("POST", c.path, c.body, &p); code != 400 || p.Field != c.field {
				t.Errorf("POST %s = %d %+v, want 400 naming %s", c.path, code, p, c.field)
			}
		})
	}
	o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
	if j.State != "pending" {
		t.Errorf("the job is %s after refused starts", j.State)
	}
	var list struct{ Replications []job }
	if o.do("GET", "/api/v1/replications", nil, &list); len(list.Replications) != 1 {
		t.Errorf("refused creates stored jobs: %d jobs", len(list.Replications))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{bus.StreamCommands, bus.StreamDiscovery} {
		s, err := o.conn.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Info(ctx)
		want := uint64(0)
		if name == bus.StreamDiscovery {
			want = 1 // o.learn's request
		}
		if info.State.Msgs != want {
			t.Errorf("stream %s holds %d messages, want %d", name, info.State.Msgs, want)
		}
	}
}

// TestServeTLS: with a certificate and key the API answers over HTTPS
// only; a certificate without a key is refused.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pool := httpservertest.SelfSigned(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	cfg := api.Config{}
	cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	o := newOMA(t, 1, func(c *appliance.Config) { c.API = cfg })
	base := o.url
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("an OMA with TLS serves %s", base)
	}
	host := strings.TrimPrefix(base, "https://")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("POST", base+"/api/v1/tokens", strings.NewReader(`{"name":"over-tls"}`))
	req.Header.Set("Authorization", "bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base) // its own origin, with https
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.TLS == nil {
		t.Errorf("POST over HTTPS = %d (TLS %v), want 201 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := http.Get("http://" + host + "/api/v1/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the HTTPS port")
		}
	}
	if _, err := http.Get(base + "/api/v1/health"); err == nil {
		t.Error("a client that does not trust the certificate got an answer")
	}

	half := api.Config{}
	half.HTTP.TLSCertFile = cfg.HTTP.TLSCertFile
	if err := half.Validate(); err == nil {
		t.Error("Validate(cert without key) = nil")
	}
	if _, err := appliance.New(appliance.Config{DataDir: t.TempDir(), API: half}); err == nil {
		t.Error("an OMA with a certificate and no key was made")
	}
}
