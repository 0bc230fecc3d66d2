// Package api serves the OMA's REST API (JSON; a Bearer token on every
// endpoint but health; errors as application/problem+json naming the
// field at fault). Handlers decode and validate, call the control layer,
// and write the answer; they decide nothing themselves.
package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/schema"
)

// Version is reported by health.
const Version = "0.1.0"

// Config configures the API. Every zero value is the safe default.
type Config struct {
	// Logger receives errors and the access log; nil discards.
	Logger *slog.Logger
	// AllowOrigins lists the browser origins (scheme://host[:port]) besides
	// the API's own that may call it; empty: none.
	AllowOrigins []string
	// HTTP configures the server Serve runs: idle timeout, and TLS with
	// HTTP.TLSCertFile and HTTP.TLSKeyFile (both or neither). Its Logger
	// defaults to Logger.
	HTTP httpserver.Config
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Validate reports a configuration Serve would refuse.
func (c Config) Validate() error { return c.HTTP.Validate() }

// API is the OMA REST API.
type API struct {
	cfg    Config
	ctl    *control.Control
	store  *store.Store
	server *bus.Server
	log    *slog.Logger
	now    func() time.Time
	tokens *tokens.Tracker

	// validator compiles the event schemas on first use.
	validator func() (*schema.Validator, error)
}

// New returns the API over ctl configured by cfg. server may be nil when
// NATS is external.
func New(ctl *control.Control, st *store.Store, server *bus.Server, cfg Config) *API {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP.Logger == nil {
		cfg.HTTP.Logger = cfg.Logger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &API{cfg: cfg, ctl: ctl, store: st, server: server, log: log, now: cfg.Now,
		tokens: tokens.NewTracker(st, tokens.TrackerConfig{Now: cfg.Now}), validator: sync.OnceValues(schema.New)}
}

// Handler returns the HTTP handler of the API.
func (a *API) Handler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path)
	})
	v1 := r.PathPrefix("/api/v1").Subrouter()
	v1.Handle("/health", a.handle(a.health)).Methods(http.MethodGet)

	authed := v1.NewRoute().Subrouter()
	authed.Use(a.auth)
	authed.Handle("/replications", a.handle(a.createReplication)).Methods(http.MethodPost)
	authed.Handle("/replications", a.handle(a.listReplications)).Methods(http.MethodGet)
	authed.Handle("/replications/{id}", a.handle(a.getReplication)).Methods(http.MethodGet)
	authed.Handle("/replications/{id}", a.handle(a.cancelReplication)).Methods(http.MethodDelete)
	authed.Handle("/replications/{id}/start", a.handle(a.startReplication)).Methods(http.MethodPost)
	authed.Handle("/discover", a.handle(a.discover)).Methods(http.MethodPost)
	authed.Handle("/vms", a.handle(a.vms)).Methods(http.MethodGet)
	authed.Handle("/vmas", a.handle(a.vmas)).Methods(http.MethodGet)
	authed.Handle("/vmas", a.handle(a.addVMA)).Methods(http.MethodPost)
	authed.Handle("/tokens", a.handle(a.createToken)).Methods(http.MethodPost)
	authed.Handle("/tokens", a.handle(a.listTokens)).Methods(http.MethodGet)
	authed.Handle("/tokens/{name}", a.handle(a.revokeToken)).Methods(http.MethodDelete)
	return httpserver.Guard(a.cfg.AllowOrigins, r)
}

// handle adapts a handler that returns an error: the error becomes a problem.
func (a *API) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		status, field := statusOf(err)
		detail := detailOf(err)
		if status == http.StatusInternalServerError {
			a.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			detail = "internal error: see the OMA log"
		}
		writeProblem(w, status, field, detail)
	})
}

// auth requires a valid Bearer token.
func (a *API) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := httpserver.BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "missing bearer token: send Authorization: Bearer <token> (oma token create --name NAME, or POST /api/v1/tokens)")
			return
		}
		if !a.validToken(r.Context(), secret) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit", error="invalid_token"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// validToken reports whether secret is a valid token, recording its use.
func (a *API) validToken(ctx context.Context, secret string) bool {
	name, ok, err := a.tokens.Check(secret)
	if err != nil {
		a.log.WarnContext(ctx, "token use not recorded", "token", name, "err", err)
	}
	return ok
}

// authorized reports whether r carries a valid bearer token.
func (a *API) authorized(r *http.Request) bool {
	secret, ok := httpserver.BearerToken(r)
	return ok && a.validToken(r.Context(), secret)
}

// Serve serves the API on l (HTTPS when Config.HTTP has a certificate and
// key) until ctx ends, then drains requests and writes the tokens' last
// uses.
func (a *API) Serve(ctx context.Context, l net.Listener) error {
	err := httpserver.Serve(ctx, l, a.Handler(), a.cfg.HTTP)
	if ferr := a.tokens.Flush(); ferr != nil {
		a.log.Warn("token uses not recorded", "err", ferr)
	}
	return err
}
