// Package api serves the OMA's REST API (JSON; a Bearer token on every
// endpoint but health, whose scope allows the endpoint (tokens.Scope: GET
// needs read; jobs and discovery operate; tokens and VMAs admin), else
// 403 naming the scope needed; errors as application/problem+json naming
// the field at fault). NBD export names appear in job answers to admin
// tokens only. Handlers decode and validate, call the control layer,
// and write the answer; they decide nothing themselves.
package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/cutover"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/openapi"
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
	// VMAPorts, when set, says which VMAs' API ports the OMA cannot hold
	// (*tunnels.Proxy): health is then degraded.
	VMAPorts interface{ Unheld() map[string]string }
	// Metrics, when set, serves GET /metrics (Prometheus's text format)
	// to a token of scope read.
	Metrics http.Handler
}

// Validate reports a configuration Serve would refuse.
func (c Config) Validate() error { return c.HTTP.Validate() }

// jobManager is what the API asks of the jobs; *jobs.Manager satisfies it.
type jobManager interface {
	CreateJob(ctx context.Context, req jobs.CreateRequest) (store.Job, error)
	Jobs(state, vmID string) ([]store.Job, error)
	Job(id string) (store.Job, error)
	Start(ctx context.Context, id string, cred vmas.VCenterCredentials, opts jobs.StartOptions) (store.Job, error)
	Cancel(ctx context.Context, id string) (store.Job, error)
	Pause(ctx context.Context, id, reason string) (store.Job, error)
	Resume(ctx context.Context, id string) (store.Job, error)
	SetRate(ctx context.Context, id string, rate int64) (store.Job, error)
	CurrentReplica(j store.Job) (*replicas.Replica, error)
}

// vmaRegistry is what the API asks of the VMAs; *vmas.Registry satisfies it.
type vmaRegistry interface {
	AddVMA(ctx context.Context, reg vmas.Registration) (vmas.Credentials, error)
	VMAs() ([]store.VMA, error)
	Connected() ([]string, error)
	Forwards() (authkeys.Forwards, error)
	SetVMARate(id string, ch store.RateChange, also func(*bbolt.Tx, store.VMA) error) (store.VMA, error)
}

// inventoryKeeper is what the API asks of the inventory; *inventory.Keeper
// satisfies it.
type inventoryKeeper interface {
	Discover(ctx context.Context, req inventory.DiscoverRequest) (events.DiscoverResult, error)
	Inventory() ([]inventory.VM, error)
}

var (
	_ jobManager      = (*jobs.Manager)(nil)
	_ vmaRegistry     = (*vmas.Registry)(nil)
	_ inventoryKeeper = (*inventory.Keeper)(nil)
)

// Control is what the API runs on: the OMA's parts, and the bus connection
// and start time its health reports, and its exports' restarts.
// *control.Control satisfies it.
type Control interface {
	jobManager
	vmaRegistry
	inventoryKeeper
	Bus() *bus.Conn
	// VCenters are the registered vCenters.
	VCenters() *vcenters.Registry
	// Plans are the migration plans.
	Plans() *plans.Manager
	// Queue is the OMA's queue of started jobs.
	Queue() *queue.Queue
	// Cutovers are the VMs' cutovers.
	Cutovers() *cutover.Manager
	Started() time.Time
	ExportRestarts() uint64
}

// API is the OMA REST API.
type API struct {
	cfg    Config
	ctl    Control
	store  *store.Store
	server *bus.Server
	log    *slog.Logger
	now    func() time.Time
	tokens *tokens.Tracker

	// validator compiles the event schemas on first use.
	validator func() (*schema.Validator, error)
	// pages serves what is not the API (SetPages).
	pages http.Handler
}

// New returns the API over ctl configured by cfg. server may be nil when
// NATS is external.
func New(ctl Control, st *store.Store, server *bus.Server, cfg Config) *API {
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

// Handler returns the HTTP handler of the API: its routes, behind the
// same-origin guard; with pages (SetPages), those at every other path.
func (a *API) Handler() http.Handler {
	api := httpserver.Guard(a.cfg.AllowOrigins, a.Router())
	if a.pages == nil {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/metrics", api)
	mux.Handle("/", a.pages)
	return mux
}

// SetPages serves h at every path outside /api/ and /metrics: the web
// console. Call it before Serve.
func (a *API) SetPages(h http.Handler) { a.pages = h }

// Router returns the API's routes, unguarded: what Handler serves, for a
// test to compare with the OpenAPI document.
func (a *API) Router() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path)
	})
	if a.cfg.Metrics != nil {
		r.Handle("/metrics", a.auth(a.need(tokens.Read, a.cfg.Metrics))).Methods(http.MethodGet)
	}
	v1 := r.PathPrefix("/api/v1").Subrouter()
	v1.Handle("/health", a.handle(a.health)).Methods(http.MethodGet)
	v1.Handle("/openapi.json", openapi.Handler(OpenAPI)).Methods(http.MethodGet)

	authed := v1.NewRoute().Subrouter()
	authed.Use(a.auth)
	route := func(method, path string, need tokens.Scope, h func(http.ResponseWriter, *http.Request) error) {
		authed.Handle(path, a.need(need, a.handle(h))).Methods(method)
	}
	route(http.MethodPost, "/replications", tokens.Operate, a.createReplication)
	route(http.MethodGet, "/replications", tokens.Read, a.listReplications)
	route(http.MethodGet, "/replications/{id}", tokens.Read, a.getReplication)
	route(http.MethodDelete, "/replications/{id}", tokens.Operate, a.cancelReplication)
	route(http.MethodPost, "/replications/{id}/start", tokens.Operate, a.startReplication)
	route(http.MethodPatch, "/replications/{id}", tokens.Operate, a.patchReplication)
	route(http.MethodPatch, "/vmas/{id}", tokens.Operate, a.patchVMA)
	route(http.MethodGet, "/limits", tokens.Read, a.getLimits)
	route(http.MethodPatch, "/limits", tokens.Operate, a.patchLimits)
	route(http.MethodPost, "/replications/{id}/pause", tokens.Operate, a.pauseReplication)
	route(http.MethodPost, "/replications/{id}/resume", tokens.Operate, a.resumeReplication)
	route(http.MethodGet, "/queue", tokens.Read, a.listQueue)
	route(http.MethodPost, "/discover", tokens.Operate, a.discover)
	route(http.MethodGet, "/vms", tokens.Read, a.vms)
	route(http.MethodGet, "/vmas", tokens.Read, a.vmas)
	route(http.MethodPost, "/vmas", tokens.Admin, a.addVMA)
	route(http.MethodPost, "/tokens", tokens.Admin, a.createToken)
	route(http.MethodGet, "/tokens", tokens.Admin, a.listTokens)
	route(http.MethodDelete, "/tokens/{name}", tokens.Admin, a.revokeToken)
	route(http.MethodGet, "/token", tokens.Read, a.ownToken)
	route(http.MethodPost, "/vcenters", tokens.Admin, a.createVCenter)
	route(http.MethodGet, "/vcenters", tokens.Read, a.listVCenters)
	route(http.MethodGet, "/vcenters/{name}", tokens.Read, a.getVCenter)
	route(http.MethodPut, "/vcenters/{name}", tokens.Admin, a.updateVCenter)
	route(http.MethodDelete, "/vcenters/{name}", tokens.Admin, a.deleteVCenter)
	route(http.MethodPost, "/plans", tokens.Operate, a.createPlan)
	route(http.MethodGet, "/plans", tokens.Read, a.listPlans)
	route(http.MethodGet, "/plans/{name}", tokens.Read, a.getPlan)
	route(http.MethodPatch, "/plans/{name}", tokens.Operate, a.patchPlan)
	route(http.MethodDelete, "/plans/{name}", tokens.Operate, a.deletePlan)
	route(http.MethodGet, "/plans/{name}/preflight", tokens.Operate, a.preflightPlan)
	route(http.MethodPost, "/plans/{name}/pause", tokens.Operate, a.planAction(pausePlan))
	route(http.MethodPost, "/plans/{name}/resume", tokens.Operate, a.planAction(resumePlan))
	route(http.MethodPost, "/plans/{name}/sync", tokens.Operate, a.planAction(syncPlan))
	route(http.MethodPost, "/plans/{name}/vms/{vm}/retry", tokens.Operate, a.planAction(retryPlanVM))
	a.routeCutovers(route)
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

// holderKey is the context key of the tokens.Holder auth found.
type holderKey struct{}

// holderOf returns the holder of the token that authenticated r; the zero
// Holder (no scope) outside auth.
func holderOf(r *http.Request) tokens.Holder {
	h, _ := r.Context().Value(holderKey{}).(tokens.Holder)
	return h
}

// scopeProblem is the 403 answer to a token whose scope is too small.
type scopeProblem struct {
	Problem
	// Scope is the scope the request needs.
	Scope tokens.Scope `json:"scope"`
}

// need answers 403, naming the scope needed, to a token whose scope does
// not allow it.
func (a *API) need(scope tokens.Scope, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := holderOf(r)
		if h.Scope.Allows(scope) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="godwit", error="insufficient_scope", scope="`+string(scope)+`"`)
		p := scopeProblem{Scope: scope, Problem: Problem{Type: "about:blank", Title: http.StatusText(http.StatusForbidden), Status: http.StatusForbidden,
			Field: "Authorization", Detail: fmt.Sprintf("%s %s needs a token of scope %s; token %s has scope %s", r.Method, r.URL.Path, scope, h.Name, h.Scope)}}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(p)
	})
}

// auth requires a valid Bearer token, and gives its holder to the request
// (holderOf) and its name to the access log.
func (a *API) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := httpserver.BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "missing bearer token: send Authorization: Bearer <token> (oma token create --name NAME, or POST /api/v1/tokens)")
			return
		}
		h, ok := a.checkToken(r.Context(), secret)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit", error="invalid_token"`)
			writeProblem(w, http.StatusUnauthorized, "Authorization", "invalid bearer token")
			return
		}
		httpserver.SetToken(r, h.Name)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), holderKey{}, h)))
	})
}

// checkToken returns the holder of secret if it is a valid token,
// recording its use.
func (a *API) checkToken(ctx context.Context, secret string) (tokens.Holder, bool) {
	h, ok, err := a.tokens.Check(secret)
	if err != nil {
		a.log.WarnContext(ctx, "token use not recorded", "token", h.Name, "err", err)
	}
	return h, ok
}

// authorized reports whether r carries a valid bearer token, and names it
// in the access log.
func (a *API) authorized(r *http.Request) bool {
	secret, ok := httpserver.BearerToken(r)
	if !ok {
		return false
	}
	h, ok := a.checkToken(r.Context(), secret)
	if ok {
		httpserver.SetToken(r, h.Name)
	}
	return ok
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
