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
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
)

// Version is reported by health.
const Version = "0.1.0"

// API is the OMA REST API.
type API struct {
	ctl    *control.Control
	store  *store.Store
	server *bus.Server
	log    *slog.Logger
	now    func() time.Time
}

// New returns the API over ctl. server may be nil when NATS is external.
func New(ctl *control.Control, st *store.Store, server *bus.Server, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{ctl: ctl, store: st, server: server, log: log, now: time.Now}
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
	return r
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
		h := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "missing bearer token: send Authorization: Bearer <token> (oma token create --name NAME)")
			return
		}
		if _, ok := tokens.Check(a.store, strings.TrimSpace(secret)); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit", error="invalid_token"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves the API on l until ctx ends, then drains requests.
func (a *API) Serve(ctx context.Context, l net.Listener) error {
	return httpserver.Serve(ctx, l, a.Handler(), a.log)
}
