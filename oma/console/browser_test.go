package console_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// chromium finds Debian's chromium (scripts/install-deps.sh installs it):
// the program itself, not /usr/bin/chromium's wrapper script.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("chromium is not installed: run scripts/install-deps.sh (make test does)")
	return ""
}

// screenshots is where the pages' screenshots go: $GODWIT_SCREENSHOTS, else
// var/screenshots in the repository (make screenshots writes
// docs/screenshots, which the README shows).
func screenshots(t *testing.T) string {
	dir := os.Getenv("GODWIT_SCREENSHOTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "var", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is a headless chromium tab on the console.
type tab struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

// newTab starts a headless chromium (killed with the test) at 1280x900.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		_ = chromedp.Cancel(cctx)
		cancel()
	})
	if err := chromedp.Do(ctx); err != nil { // the browser's life is ctx's, not a step's
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, base: base, shots: screenshots(t)}
}

// step runs actions, within as long as the test may wait.
func (b *tab) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, testkit.Wait(b.t))
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open loads a page and waits for its main element.
func (b *tab) open(path string) {
	b.t.Helper()
	b.step("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.ID("main")))
}

// submit clicks sel and waits for the page the form leads to.
func (b *tab) submit(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, testkit.Wait(b.t))
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("submit %s: %v", sel, err)
	}
	b.step("the page after "+sel, chromedp.WaitVisible(chromedp.ID("main")))
}

// eval evaluates a JavaScript expression on the page.
func eval[T any](b *tab, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, testkit.Wait(b.t))
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shot writes the page's full screenshot as name.png.
func (b *tab) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, testkit.Wait(b.t))
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", file)
}

// TestConsoleInABrowser drives the console in Debian's chromium, headless,
// against a real OMA, VMA, simulator and nbdkit: sign in; create a plan
// from the inventory page; watch a job's bytes grow on screen without the
// page reloading; change its rate; cancel it; sign out; a request without
// the CSRF token is refused; a read-only token sees no action and its
// forged POST is 403. Every page is photographed (see screenshots), the
// overview also as a phone shows it.
func TestConsoleInABrowser(t *testing.T) {
	testkit.Long(t)
	b := newBed(t)
	reader := b.token("viewer", "read")
	tb := newTab(t, b.oma.URL)

	// Sign in.
	tb.open("/")
	if loc := eval[string](tb, "location.pathname"); loc != "/login" {
		t.Fatalf("a browser without a session is at %s, want /login", loc)
	}
	tb.shot("login")
	tb.step("type the token", chromedp.SendKeys(chromedp.ID("token"), b.oma.Token))
	tb.submit("form[action='/login'] button")
	if who := eval[string](tb, "document.querySelector('.who').textContent"); !strings.Contains(who, "initial") {
		t.Fatalf("after signing in the page says %q, want the token's name", who)
	}
	if eval[bool](tb, "document.cookie.includes('godwit_session')") {
		t.Error("the session cookie is readable from JavaScript: it must be HttpOnly")
	}

	// A plan from the inventory: web-a and web-b, their copies crawling.
	b.crawl.SetRate(96 << 10)
	tb.open("/inventory")
	for _, vm := range b.named("web-a", "web-b") {
		tb.step("select "+vm.Name, chromedp.Click(chromedp.ID("vm-"+vm.ID+"-"+b.vma.ID)))
	}
	tb.step("name the plan", chromedp.SendKeys(chromedp.ID("plan-name"), "web-1"), chromedp.SetValue(chromedp.ID("plan-interval"), "1h"))
	tb.shot("inventory")
	tb.submit("#plan-form button[type=submit]")
	if loc := eval[string](tb, "location.pathname"); loc != "/plans/web-1" {
		t.Fatalf("after creating the plan the browser is at %s", loc)
	}
	var job string
	testkit.Eventually(t, "the plan's first job on its page", func() bool {
		job = eval[string](tb, `(document.querySelector("a[href^='/jobs/']") || {textContent: ""}).textContent`)
		return job != ""
	})
	tb.shot("plan")

	// The job's page: its bytes grow without a reload.
	tb.open("/jobs/" + job)
	eval[bool](tb, "window.notReloaded = true")
	var seen []string
	testkit.Eventually(t, "the job's bytes growing on screen", func() bool {
		v := eval[string](tb, `document.querySelector("[data-field='bytes_done']").textContent`)
		if len(seen) == 0 || seen[len(seen)-1] != v {
			seen = append(seen, v)
		}
		return len(seen) >= 3
	})
	if !eval[bool](tb, "window.notReloaded === true") {
		t.Fatal("the job's page reloaded: its figures must change in place")
	}
	t.Logf("bytes on screen: %v", seen)
	if state := eval[string](tb, `document.getElementById("live-state").textContent`); !strings.Contains(state, "on") {
		t.Errorf("the page says %q about its live updates", state)
	}
	tb.shot("job")

	// Its rate, then its cancel, with the page's own forms.
	tb.step("the rate", chromedp.SetValue(chromedp.ID("rate"), "64K"))
	tb.submit("form[action$='/rate'] button")
	var j struct {
		State     string `json:"state"`
		RateLimit int64  `json:"rate_limit"`
	}
	if b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j); j.RateLimit != 64<<10 {
		t.Errorf("after the console's rate form the job's rate_limit = %d, want %d", j.RateLimit, 64<<10)
	}
	if flash := eval[string](tb, `(document.querySelector(".flash") || {textContent: ""}).textContent`); !strings.Contains(flash, "limit set") {
		t.Errorf("after setting the rate the page says %q", flash)
	}
	// A request without the CSRF token, from the page itself, is refused.
	if status := eval[int](tb, `fetch("/jobs/`+job+`/cancel", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: ""}).then(r => r.status)`); status != http.StatusForbidden {
		t.Errorf("POST cancel without the CSRF token = %d, want 403", status)
	}
	if b.oma.Do(http.MethodGet, "/api/v1/replications/"+job, nil, &j); j.State == events.JobCancelled {
		t.Fatal("the request without a CSRF token cancelled the job")
	}
	tb.submit("form[action$='/cancel'] button")
	testkit.Eventually(t, "the job cancelled, on its page", func() bool {
		return strings.Contains(eval[string](tb, `document.querySelector("[data-field='state']").textContent`), events.JobCancelled)
	})

	// The other pages, and the overview on a phone.
	b.crawl.SetRate(0)
	for _, p := range []string{"/", "/events", "/reference"} {
		tb.open(p)
		tb.shot(map[string]string{"/": "overview", "/events": "events", "/reference": "reference"}[p])
	}
	tb.open("/events")
	if n := eval[int](tb, `document.querySelectorAll("#events li").length`); n == 0 {
		t.Error("the events page lists no event")
	}
	tb.step("a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	tb.open("/")
	if over := eval[int](tb, "document.documentElement.scrollWidth - window.innerWidth"); over > 0 {
		t.Errorf("on a 390-pixel screen the overview is %d pixels too wide", over)
	}
	tb.shot("overview-phone")
	tb.step("a desktop's screen", chromedp.EmulateViewport(1280, 900))

	// Sign out.
	tb.open("/")
	tb.submit("form[action='/logout'] button")
	if loc := eval[string](tb, "location.pathname"); loc != "/login" {
		t.Fatalf("after signing out the browser is at %s", loc)
	}
	tb.open("/inventory")
	if loc := eval[string](tb, "location.pathname"); loc != "/login" {
		t.Fatalf("after signing out /inventory shows %s, want the sign-in page", loc)
	}

	// A read-only token: every page, no action; its forged POST is 403.
	tb.step("type the read token", chromedp.SendKeys(chromedp.ID("token"), reader))
	tb.submit("form[action='/login'] button")
	for _, p := range []string{"/", "/inventory", "/plans/web-1", "/jobs/" + job} {
		tb.open(p)
		if n := eval[int](tb, `document.querySelectorAll("form[method=post]:not([action='/logout'])").length`); n != 0 {
			t.Errorf("read-only %s shows %d action forms, want none", p, n)
		}
	}
	tb.open("/plans/web-1")
	tb.shot("plan-read-only")
	forged := `fetch("/plans/web-1/pause", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "csrf=" + encodeURIComponent(document.querySelector("form[action='/logout'] input[name=csrf]").value)}).then(r => r.status)`
	if status := eval[int](tb, forged); status != http.StatusForbidden {
		t.Errorf("the read-only token's forged POST = %d, want 403", status)
	}
	var p struct {
		Paused bool `json:"paused"`
	}
	if b.oma.Do(http.MethodGet, "/api/v1/plans/web-1", nil, &p); p.Paused {
		t.Error("the read-only token's forged POST paused the plan")
	}
}
