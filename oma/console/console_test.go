package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	vmaappliance "github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/vcsim"
)

// bed is an OMA, a VMA and a simulated vCenter registered as "sim", its
// VMs discovered; crawl slows the VMA's copies (SetRate(0): full speed).
type bed struct {
	t     *testing.T
	sim   *vcsim.Simulator
	oma   *testbed.OMA
	vma   *testbed.VMA
	crawl *copier.Limiter
	vms   []events.VM
}

func newBed(t *testing.T) *bed {
	t.Helper()
	b := &bed{t: t, crawl: copier.NewLimiter(0, nil)}
	b.sim = testbed.StartSim(t, vcsim.Config{VMs: 1, DiskData: 4 << 20, Extra: []vcsim.VM{
		{Name: "web-a", Disks: []int64{16 << 20}, CBT: true, On: true},
		{Name: "web-b", Disks: []int64{16 << 20, 8 << 20}, CBT: true, On: true},
		{Name: "web-c", Disks: []int64{16 << 20}, CBT: true, On: true},
	}})
	b.oma = testbed.StartOMA(t, testbed.OMAConfig{Ports: 4, Configure: func(c *appliance.Config) {
		c.MinSyncInterval, c.PlanPoll = time.Second, 200*time.Millisecond
	}})
	b.vma = testbed.StartVMA(t, b.oma, testbed.VMAConfig{VCenterCAFile: b.sim.CAFile, Configure: func(c *vmaappliance.Config) {
		c.Copy.Limiter = b.crawl
		c.ProgressInterval = 200 * time.Millisecond
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OMA log:\n%s\nVMA log:\n%s", b.oma.Logs, b.vma.Logs)
		}
	})
	var vc struct {
		Detail string `json:"detail"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": b.sim.Host, "username": b.sim.Username,
		"password": b.sim.Password, "datacenters": []string{vcsim.Datacenter}}, &vc); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/vcenters = %d: %s", code, vc.Detail)
	}
	b.vms = b.oma.Discover(map[string]any{"vcenter": b.sim.Host, "username": b.sim.Username, "password": b.sim.Password})
	return b
}

// named returns the discovered VMs of those names, in their order.
func (b *bed) named(names ...string) []events.VM {
	b.t.Helper()
	var out []events.VM
	for _, n := range names {
		for _, vm := range b.vms {
			if vm.Name == n {
				out = append(out, vm)
			}
		}
	}
	if len(out) != len(names) {
		b.t.Fatalf("found %d of the VMs %v", len(out), names)
	}
	return out
}

// token makes an API token of scope and returns its secret.
func (b *bed) token(name, scope string) string {
	b.t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if code := b.oma.Do(http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "scope": scope}, &tok); code != http.StatusCreated {
		b.t.Fatalf("create token %s = %d", name, code)
	}
	return tok.Token
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, as a browser without JavaScript uses the console.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: base, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get returns a page's status, body and Location.
func (br *browser) get(path string) (int, string, string) {
	br.t.Helper()
	resp, err := br.hc.Get(br.base + path)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

// post sends a form, from the console's own origin.
func (br *browser) post(path string, form url.Values) (int, string, string) {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, br.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", br.base)
	resp, err := br.hc.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

// signIn signs in with token and returns the session's CSRF token, read
// from the overview's sign-out form.
func (br *browser) signIn(token string) string {
	br.t.Helper()
	if code, _, loc := br.post("/login", url.Values{"token": {token}, "next": {"/"}}); code != http.StatusSeeOther || loc != "/" {
		br.t.Fatalf("sign in = %d to %q, want 303 to /", code, loc)
	}
	code, body, _ := br.get("/")
	if code != http.StatusOK {
		br.t.Fatalf("GET / after signing in = %d", code)
	}
	return csrfOf(br.t, body)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no CSRF token in the page:\n%.2000s", page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// TestConsoleWithoutJavaScript uses the console as a browser without
// JavaScript does (a cookie jar, forms): signing in and out, every page,
// a plan made from the inventory, a job's actions; a form without its
// CSRF token, a session cookie that is not one, another site's origin and
// a read-only token's forged POST are refused and change nothing.
func TestConsoleWithoutJavaScript(t *testing.T) {
	testkit.Long(t)
	b := newBed(t)
	br := newBrowser(t, b.oma.URL)

	// Not signed in: the pages send to the sign-in page; a bad token is refused.
	if code, _, loc := br.get("/inventory"); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
		t.Fatalf("GET /inventory signed out = %d to %q, want 303 to /login", code, loc)
	}
	if code, body, _ := br.post("/login", url.Values{"token": {"not-a-token"}}); code != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("sign in with a bad token = %d", code)
	}
	csrf := br.signIn(b.oma.Token)
	var cookie *http.Cookie
	for _, c := range br.hc.Jar.Cookies(mustURL(t, b.oma.URL)) {
		if c.Name == "godwit_session" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value == b.oma.Token {
		t.Fatal("no session cookie, or one that holds the token")
	}

	// Every page renders.
	for _, p := range []string{"/", "/inventory", "/events", "/reference", "/inventory?q=PGW&power=poweredOn&cbt=on"} {
		if code, body, _ := br.get(p); code != http.StatusOK || !strings.Contains(body, "</html>") {
			t.Errorf("GET %s = %d", p, code)
		}
	}

	// A plan from the inventory: the first two VMs.
	_, inv, _ := br.get("/inventory")
	form := url.Values{"csrf": {csrf}, "name": {"web-1"}, "vcenter": {"sim"}, "interval": {"1h"}}
	for _, vm := range b.named("web-a", "web-b") {
		if !strings.Contains(inv, vm.Path) {
			t.Errorf("the inventory page lacks %s", vm.Path)
		}
		form.Add("vm", vm.Path)
	}
	b.crawl.SetRate(256 << 10)
	if code, _, loc := br.post("/inventory/plan", form); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/plans/web-1") {
		t.Fatalf("create a plan from the inventory = %d to %q", code, loc)
	}
	var plan struct {
		VMs []struct {
			Name       string `json:"name"`
			CurrentJob string `json:"current_job"`
		} `json:"vms"`
	}
	var raw json.RawMessage
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the plan: %s", raw)
		}
	})
	testkit.Eventually(t, "the plan's first job", func() bool {
		b.oma.Do(http.MethodGet, "/api/v1/plans/web-1", nil, &raw)
		_ = json.Unmarshal(raw, &plan)
		return len(plan.VMs) == 2 && plan.VMs[0].CurrentJob != ""
	})
	if code, body, _ := br.get("/plans/web-1"); code != http.StatusOK || !strings.Contains(body, plan.VMs[0].Name) || !strings.Contains(body, "Cut the plan") {
		t.Errorf("GET /plans/web-1 = %d, without its VMs or its actions", code)
	}
	if code, _, loc := br.post("/plans/web-1/preflight", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || !strings.Contains(loc, "Preflight") {
		t.Errorf("POST preflight = %d to %q, want 303 with its summary", code, loc)
	}
	job := plan.VMs[0].CurrentJob
	if code, body, _ := br.get("/jobs/" + job); code != http.StatusOK || !strings.Contains(body, "Cancel the job") {
		t.Errorf("GET /jobs/%s = %d without its actions", job, code)
	}

	// A form without its CSRF token, or with another, changes nothing.
	for _, bad := range []url.Values{{"rate": {"1M"}}, {"rate": {"1M"}, "csrf": {"forged"}}} {
		if code, _, _ := br.post("/jobs/"+job+"/rate", bad); code != http.StatusForbidden {
			t.Errorf("POST rate with csrf %q = %d, want 403", bad.Get("csrf"), code)
		}
	}
	// Another site's page cannot post, even with the token.
	req, _ := http.NewRequest(http.MethodPost, b.oma.URL+"/jobs/"+job+"/cancel", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := br.hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST cancel from another origin = %v %v, want 403", resp.StatusCode, err)
	}
	var j struct {
		State     string `json:"state"`
		RateLimit int64  `json:"rate_limit"`
	}
	b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j)
	if j.RateLimit != 0 || events.JobStates() == nil || j.State == events.JobCancelled {
		t.Fatalf("after refused forms the job is %s with rate %d: something changed", j.State, j.RateLimit)
	}
	// With its token: the rate, then the cancel.
	if code, _, loc := br.post("/jobs/"+job+"/rate", url.Values{"csrf": {csrf}, "rate": {"128K"}}); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/jobs/"+job) {
		t.Fatalf("POST rate = %d to %q", code, loc)
	}
	if b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j); j.RateLimit != 128<<10 {
		t.Errorf("after the console's rate the job's rate_limit = %d, want %d", j.RateLimit, 128<<10)
	}
	if code, body, _ := br.post("/jobs/"+job+"/rate", url.Values{"csrf": {csrf}, "rate": {"1"}}); code != http.StatusBadRequest || !strings.Contains(body, "rate") {
		t.Errorf("POST a rate the API refuses = %d, want its 400 naming rate", code)
	}
	if code, _, _ := br.post("/jobs/"+job+"/cancel", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("POST cancel = %d", code)
	}
	testkit.Eventually(t, "the job cancelled", func() bool {
		b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j)
		return j.State == events.JobCancelled
	})

	// A read-only token: every page, no action, and a forged POST is 403.
	ro := newBrowser(t, b.oma.URL)
	roCSRF := ro.signIn(b.token("viewer", "read"))
	for _, p := range []string{"/", "/inventory", "/plans/web-1", "/jobs/" + job} {
		code, body, _ := ro.get(p)
		if code != http.StatusOK {
			t.Errorf("read-only GET %s = %d", p, code)
		}
		for _, action := range []string{`action="/inventory/plan"`, `/sync"`, `/cancel"`, `/rate"`, `/cutover"`} {
			if strings.Contains(body, action) {
				t.Errorf("read-only %s shows the action %s", p, action)
			}
		}
	}
	if code, body, _ := ro.post("/plans/web-1/pause", url.Values{"csrf": {roCSRF}}); code != http.StatusForbidden || !strings.Contains(body, "scope read") {
		t.Errorf("read-only POST pause = %d, want 403 naming the scope", code)
	}
	var p struct {
		Paused bool `json:"paused"`
	}
	if b.oma.Do(http.MethodGet, "/api/v1/plans/web-1", nil, &p); p.Paused {
		t.Error("the read-only token's forged POST paused the plan")
	}

	// Signing out ends the session: its cookie no longer opens a page.
	if code, _, loc := br.post("/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || loc != "/login" {
		t.Errorf("sign out = %d to %q", code, loc)
	}
	stale := newBrowser(t, b.oma.URL)
	stale.hc.Jar.SetCookies(mustURL(t, b.oma.URL), []*http.Cookie{{Name: "godwit_session", Value: cookie.Value}})
	if code, _, _ := stale.get("/"); code != http.StatusSeeOther {
		t.Errorf("GET / with the signed-out session's cookie = %d, want 303 to the sign-in page", code)
	}
	// A token revoked ends its sessions at their next request.
	if code := b.oma.Do(http.MethodDelete, "/api/v1/tokens/viewer", nil, nil); code != http.StatusNoContent {
		t.Fatalf("revoke viewer = %d", code)
	}
	if code, _, loc := ro.get("/inventory"); code != http.StatusSeeOther || loc != "/login" {
		t.Errorf("GET /inventory with a revoked token's session = %d to %q, want 303 to /login", code, loc)
	}
}

// TestConsoleStreamResumes: the event stream resumes from the Last-Event-ID
// a browser sends when it reconnects, missing nothing of what happened
// while it was away.
func TestConsoleStreamResumes(t *testing.T) {
	testkit.Long(t)
	b := newBed(t)
	br := newBrowser(t, b.oma.URL)
	br.signIn(b.oma.Token)
	subject := "godwit.job.>"
	first := readEvents(t, br, subject, "", 0, func() {
		for _, vm := range b.named("web-a") {
			b.oma.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vm.ID}, "replication_type": "initial"}, nil)
		}
	}, 1)
	last := first[len(first)-1].id
	// Away: two more jobs are created.
	var ids []string
	for _, vm := range b.named("web-b", "web-c") {
		var j struct {
			JobID string `json:"job_id"`
		}
		b.oma.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]any{"id": vm.ID}, "replication_type": "initial"}, &j)
		ids = append(ids, j.JobID)
	}
	time.Sleep(time.Second) // the hub has them
	again := readEvents(t, br, subject, last, 0, nil, 2)
	for i, id := range ids {
		if !strings.Contains(again[i].data, id) {
			t.Errorf("replayed event %d = %s, want the creation of %s", i, again[i].data, id)
		}
	}
}

type sse struct{ id, data string }

// readEvents opens the event stream of subject (with Last-Event-ID
// lastID when not ""), runs then (if not nil), and returns the first n
// events.
func readEvents(t *testing.T, br *browser, subject, lastID string, _ int, then func(), n int) []sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Wait(t))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, br.base+"/stream?subject="+url.QueryEscape(subject), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := br.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /stream = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if then != nil {
		then()
	}
	var out []sse
	var cur sse
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.data != "":
			var ev struct {
				Type string `json:"type"`
			}
			if json.Unmarshal([]byte(cur.data), &ev) == nil && ev.Type == events.TypeJobCreated {
				out = append(out, cur)
			}
			cur = sse{}
		}
	}
	if len(out) < n {
		t.Fatalf("got %d job-created events from the stream, want %d (%v)", len(out), n, sc.Err())
	}
	return out
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
