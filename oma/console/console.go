// Package console serves the OMA's web console at / on its API address:
// pages rendered on the server with html/template (readable without
// JavaScript), a few KB of JavaScript of its own for live updates by
// Server-Sent Events fed from JetStream, and assets embedded in the
// binary.
//
// The console holds no state of its own and decides nothing: it signs a
// browser in with an API token (kept in the OMA's memory, the browser
// holding an HttpOnly, SameSite=Strict session cookie), and reads and acts
// by calling the OMA's own REST API in the process with that token, so
// the API's scopes, validation and errors are the console's. Every form
// carries the session's CSRF token; the pages keep the API's origin rules
// (httpserver.GuardForms). A read-only token sees everything, and no
// action.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/tokens"
)

//go:embed templates static
var files embed.FS

// Config configures a Console. API and JetStream are required.
type Config struct {
	// API is the OMA's REST API handler; the console calls it in the
	// process for everything it shows and does.
	API http.Handler
	// JetStream reads the streams the live updates come from.
	JetStream jetstream.JetStream
	// Streams are the streams followed; nil means JOBS, PROGRESS, PLANS,
	// PRESENCE, TUNNEL and ALERTS.
	Streams []string
	// AllowOrigins are the browser origins besides the console's own that
	// may post to it (the API's -api-allow-origin).
	AllowOrigins []string
	// SessionIdle and SessionMax end a session unused that long, or that
	// old; zero means 1 hour and 12 hours.
	SessionIdle, SessionMax time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives what goes wrong; nil discards it.
	Logger *slog.Logger
}

// Console is the web console.
type Console struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	hub      *hub
	rates    *throughput
	static   http.Handler

	// done is closed when Run's context ends: the event streams end then.
	done     chan struct{}
	doneOnce sync.Once
}

// New returns the console of cfg.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.JetStream == nil {
		return nil, errors.New("console: API and JetStream are required")
	}
	if cfg.Streams == nil {
		cfg.Streams = []string{bus.StreamJobs, bus.StreamProgress, bus.StreamPlans, bus.StreamPresence, bus.StreamTunnel, bus.StreamAlerts}
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = time.Hour
	}
	if cfg.SessionMax == 0 {
		cfg.SessionMax = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, log: log, sessions: newSessions(cfg.SessionIdle, cfg.SessionMax, cfg.Now), pages: pages,
		hub: newHub(cfg.JetStream, cfg.Streams, log), rates: newThroughput(), static: staticHandler(static), done: make(chan struct{})}, nil
}

// Run follows the streams and samples the throughput until ctx ends; then
// the browsers' event streams end, so that the server can shut down.
func (c *Console) Run(ctx context.Context) {
	defer c.doneOnce.Do(func() { close(c.done) })
	var wg sync.WaitGroup
	wg.Go(func() { c.hub.run(ctx) })
	wg.Go(func() { c.sample(ctx) })
	wg.Wait()
}

// Handler returns the console's pages, behind the origin rules.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", c.static))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.signedIn(c.logout))
	mux.HandleFunc("GET /{$}", c.signedIn(c.overview))
	mux.HandleFunc("GET /inventory", c.signedIn(c.inventory))
	mux.HandleFunc("POST /inventory/plan", c.signedIn(c.operates(c.createPlan)))
	mux.HandleFunc("GET /plans/{name}", c.signedIn(c.plan))
	mux.HandleFunc("POST /plans/{name}/{action}", c.signedIn(c.operates(c.planAction)))
	mux.HandleFunc("GET /jobs/{id}", c.signedIn(c.job))
	mux.HandleFunc("POST /jobs/{id}/{action}", c.signedIn(c.operates(c.jobAction)))
	mux.HandleFunc("GET /events", c.signedIn(c.eventsPage))
	mux.HandleFunc("GET /reference", c.signedIn(c.reference))
	mux.HandleFunc("GET /stream", c.signedIn(c.stream))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "No such page: "+r.URL.Path)
	})
	return httpserver.GuardForms(c.cfg.AllowOrigins, securityHeaders(mux))
}

// securityHeaders sets what every page answers: no framing, no sniffing,
// scripts and styles from the console only.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// sessionKey is the context key of the request's session.
type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// signedIn sends a browser without a session to the sign-in page (a GET),
// or answers 401 (anything else); a POST must carry the session's CSRF
// token, else 403.
func (c *Console) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.of(r)
		if s == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/stream" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "Sign in first.")
			return
		}
		if r.Method == http.MethodPost && !s.validCSRF(r) {
			c.log.Warn("console: a form without its CSRF token refused", "path", r.URL.Path, "token", s.name)
			c.fail(w, r, s, http.StatusForbidden, "This form is stale or was not sent by the console (its CSRF token is missing or wrong): reload the page and try again.")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// operates refuses, 403, a session whose token may only read.
func (c *Console) operates(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := sessionOf(r)
		if !s.canOperate() {
			c.fail(w, r, s, http.StatusForbidden, fmt.Sprintf("Token %s has scope %s: it may look, not change anything (that needs scope %s).", s.name, s.scope, tokens.Operate))
			return
		}
		h(w, r)
	}
}

// loginPage shows the sign-in form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.sessions.of(r) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", view{Title: "Sign in", Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

type loginData struct {
	Next string
}

// login checks the token with the API (GET /api/v1/token) and starts a
// session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	var self struct {
		Name  string       `json:"name"`
		Scope tokens.Scope `json:"scope"`
	}
	if token == "" {
		c.render(w, r, http.StatusBadRequest, "login", view{Title: "Sign in", Error: "Give an API token.", Data: loginData{Next: next}})
		return
	}
	if err := c.call(r.Context(), token, http.MethodGet, "/api/v1/token", nil, &self); err != nil {
		status := http.StatusUnauthorized
		msg := "That token is not valid: it is unknown or revoked."
		if !errors.Is(err, errSignedOut) {
			status, msg = http.StatusInternalServerError, "The OMA could not check the token: "+err.Error()
		}
		c.log.Info("console: sign-in refused", "err", err)
		c.render(w, r, status, "login", view{Title: "Sign in", Error: msg, Data: loginData{Next: next}})
		return
	}
	s := c.sessions.start(token, self.Name, self.Scope)
	http.SetCookie(w, c.sessions.cookie(r, s))
	c.log.Info("console: signed in", "token", s.name, "scope", s.scope)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	c.sessions.end(sessionOf(r))
	http.SetCookie(w, cleared(r))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext is a local path to go to after signing in: "/" for anything
// else (another site, a scheme, //host).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

// view is what every page's template gets.
type view struct {
	Title   string
	Session *session
	// Stream is the URL of the page's live event stream, "" for none.
	Stream string
	// Flash says what the last action did; Error what went wrong.
	Flash, Error string
	Data         any
}

// CSRF is the session's form token.
func (v view) CSRF() string {
	if v.Session == nil {
		return ""
	}
	return v.Session.csrf
}

// Who names the session's token.
func (v view) Who() string {
	if v.Session == nil {
		return ""
	}
	return v.Session.name
}

// Scope is the session's token's scope.
func (v view) Scope() string {
	if v.Session == nil {
		return ""
	}
	return string(v.Session.scope)
}

// CanOperate says the session's token may act.
func (v view) CanOperate() bool { return v.Session != nil && v.Session.canOperate() }

// render writes page name with v; with ?partial=1, only its live region.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	if v.Session == nil {
		v.Session = sessionOf(r)
	}
	tmpl := "layout"
	if r.URL.Query().Get("partial") == "1" && t.Lookup("live") != nil {
		tmpl = "live"
	}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, tmpl, v); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page failed to render: see the OMA log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

// fail answers an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	c.render(w, r, status, "error", view{Title: http.StatusText(status), Session: s, Error: msg})
}

// apiFail answers what a call to the API failed with: the sign-in page
// when the token was refused, the API's own status and words otherwise.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	s := sessionOf(r)
	var ae *apiError
	switch {
	case errors.Is(err, errSignedOut):
		c.sessions.end(s)
		http.SetCookie(w, cleared(r))
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	case errors.As(err, &ae):
		c.fail(w, r, s, ae.Status, ae.Error())
	default:
		c.log.Error("console: call the API", "path", r.URL.Path, "err", err)
		c.fail(w, r, s, http.StatusInternalServerError, "internal error: see the OMA log")
	}
}

// back sends the browser back to path after an action, saying what it did.
func back(w http.ResponseWriter, r *http.Request, path, flash string) {
	http.Redirect(w, r, path+"?done="+url.QueryEscape(flash), http.StatusSeeOther)
}

// staticHandler serves the embedded assets, cacheable for an hour.
func staticHandler(dir fs.FS) http.Handler {
	fsrv := http.FileServerFS(dir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}
