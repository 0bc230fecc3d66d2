// Package api serves the VMA's REST API, which the OMA reaches as
// http://localhost:9081 through the tunnel. Handlers validate, publish on
// the bus, and (for discovery) wait for the answer; the password of a
// request is sealed to this VMA's key before it is published, and never
// logged.
//
// Every field is checked against the schema of the event it goes into
// before anything is published. Cross-origin browser requests and bodies
// that are not JSON are refused (httpserver.Guard). With a token
// configured, every endpoint but health needs it, and health tells only
// status, id and version without it. With a vCenter allow list, discovery
// and replication for any other vCenter are refused before anything is
// published, so the VMA never connects to it.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/openapi"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/schema"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/jobs"
	"github.com/godwit/godwit/vma/store"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/vcenter"
)

// DefaultAddr is the default listen address of the VMA API: loopback
// only, as the OMA reaches it through the tunnel.
const DefaultAddr = "127.0.0.1:8081"

// Config configures the API. Identity is required; every other zero value
// is the safe default.
type Config struct {
	Identity identity.Identity
	Version  string
	// DiscoverTimeout bounds the wait for a discovery result; 0 means 60s.
	DiscoverTimeout time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
	// AllowOrigins lists the browser origins (scheme://host[:port]) besides
	// the API's own that may call it; empty: none.
	AllowOrigins []string
	// TokenSHA256, when set, is the SHA-256 of the bearer token every
	// endpoint but health needs (see ReadTokenFile); nil: no token.
	TokenSHA256 []byte
	// VCenterAllow, when not empty, lists the only vCenters (host, or
	// host:port) the VMA may log in to; a host without a port allows any
	// port, a request without a port means 443. Empty: any vCenter.
	VCenterAllow []string
	// HTTP configures the server Serve runs (timeouts, TLS); its Logger
	// defaults to Logger.
	HTTP httpserver.Config
	// Tunnel, when the VMA reaches the OMA through one, tells its state
	// for health; nil: no tunnel.
	Tunnel interface{ State() tunnel.State }
	// Metrics, when set, serves GET /metrics (Prometheus's text format)
	// to the bearer token.
	Metrics http.Handler
}

// Jobs is what the API asks about the jobs the VMA runs (jobs.Runner).
type Jobs interface {
	// Job returns a stored job; the error wraps store.ErrNotFound for an
	// unknown one.
	Job(id string) (store.Job, error)
	// Progress returns a job's progress, live while it runs.
	Progress(id string) (jobs.Progress, error)
	// Cleanup cancels a job that runs and removes its snapshot.
	Cleanup(ctx context.Context, id string) (jobs.Cleaned, error)
}

// API is the VMA REST API.
type API struct {
	cfg     Config
	conn    *bus.Conn
	store   *store.Store
	jobs    Jobs
	log     *slog.Logger
	started time.Time

	// validator compiles the event schemas on first use.
	validator func() (*schema.Validator, error)
}

// New returns the API. It publishes through conn, records accepted jobs
// in st, and asks js about the jobs it runs.
func New(conn *bus.Conn, st *store.Store, js Jobs, cfg Config) *API {
	if cfg.DiscoverTimeout == 0 {
		cfg.DiscoverTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP.Logger == nil {
		cfg.HTTP.Logger = cfg.Logger
	}
	return &API{cfg: cfg, conn: conn, store: st, jobs: js, log: log, started: cfg.Now(), validator: sync.OnceValues(schema.New)}
}

// ReadTokenFile reads a bearer token from a file (surrounding white space
// dropped) and returns its SHA-256 for Config.TokenSHA256. An empty file
// is an error.
func ReadTokenFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("read API token: %s is empty", path)
	}
	sum := sha256.Sum256([]byte(tok))
	return sum[:], nil
}

// Handler returns the HTTP handler.
func (a *API) Handler() http.Handler { return httpserver.Guard(a.cfg.AllowOrigins, a.Router()) }

// Router returns the API's routes, unguarded: what Handler serves, for a
// test to compare with the OpenAPI document.
func (a *API) Router() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path)
	})
	if a.cfg.Metrics != nil {
		r.Handle("/metrics", a.auth(a.cfg.Metrics)).Methods(http.MethodGet)
	}
	v1 := r.PathPrefix("/api/v1").Subrouter()
	v1.Handle("/health", a.handle(a.health)).Methods(http.MethodGet)
	v1.Handle("/openapi.json", openapi.Handler(func() ([]byte, error) { return OpenAPI(a.cfg.Version) })).Methods(http.MethodGet)
	authed := v1.NewRoute().Subrouter()
	authed.Use(a.auth)
	authed.Handle("/discover", a.handle(a.discover)).Methods(http.MethodPost)
	authed.Handle("/replicate", a.handle(a.replicate)).Methods(http.MethodPost)
	authed.Handle("/status/{job_id}", a.handle(a.status)).Methods(http.MethodGet)
	authed.Handle("/progress/{job_id}", a.handle(a.progress)).Methods(http.MethodGet)
	authed.Handle("/cleanup/{job_id}", a.handle(a.cleanup)).Methods(http.MethodPost)
	return r
}

// Serve serves the API on l until ctx ends, then drains requests.
func (a *API) Serve(ctx context.Context, l net.Listener) error {
	return httpserver.Serve(ctx, l, a.Handler(), a.cfg.HTTP)
}

// authorized reports whether r carries the configured token, or no token
// is configured.
func (a *API) authorized(r *http.Request) bool {
	if a.cfg.TokenSHA256 == nil {
		return true
	}
	tok, ok := httpserver.BearerToken(r)
	sum := sha256.Sum256([]byte(tok))
	return ok && subtle.ConstantTimeCompare(sum[:], a.cfg.TokenSHA256) == 1
}

// auth requires the configured bearer token.
func (a *API) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="godwit-vma"`)
			problem.Write(w, http.StatusUnauthorized, "Authorization", "missing or invalid bearer token: send Authorization: Bearer <token> (the VMA's -api-token-file)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var pe *problem.Error
		if errors.As(err, &pe) {
			problem.Write(w, pe.Status, pe.Field, pe.Detail)
			return
		}
		a.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error: see the VMA log")
	})
}

// health answers status, id and version to anyone; uptime, public key and
// the bus connection (connected or reconnecting, since when, reconnects,
// the last error such as an authorization violation while the OMA
// restarts) only with the token, when one is configured.
func (a *API) health(w http.ResponseWriter, r *http.Request) error {
	connected := a.conn.Connected()
	status := "ok"
	if !connected {
		status = "degraded"
	}
	h := healthAnswer{Status: status, VMAID: a.cfg.Identity.ID, Version: a.cfg.Version}
	if a.authorized(r) {
		up := int64(a.cfg.Now().Sub(a.started).Seconds())
		bh := a.conn.Health()
		h.UptimeSeconds, h.PublicKey, h.Bus = &up, a.cfg.Identity.PublicKey(), &bh
		if a.cfg.Tunnel != nil {
			ts := a.cfg.Tunnel.State()
			h.Tunnel = &tunnelHealth{Connected: ts.Connected, Forwarding: ts.Forwarding, Since: ts.Since, Reconnects: ts.Reconnects,
				BytesIn: ts.BytesIn, BytesOut: ts.BytesOut, Channels: ts.Channels, LastError: ts.LastError, Connections: nonNil(ts.Connections),
				RTTMs: ms(ts.RTT), MinRTTMs: ms(ts.MinRTT), KeepaliveRTTMs: ms(ts.KeepaliveRTT),
				BytesOutPerSecond: int64(ts.BytesOutPerSec), BytesInPerSecond: int64(ts.BytesInPerSec),
				DeliveryRateBytesPerSecond: int64(ts.DeliveryRate), SndCwnd: ts.SndCwnd,
				SndbufLimited: ts.SndbufLimited, RwndLimited: ts.RwndLimited, NoDelay: ts.NoDelay}
		}
	}
	return problem.WriteJSON(w, http.StatusOK, h)
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// credentials are the vCenter fields of a request.
type credentials struct {
	VCenter  string `json:"vcenter"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func (c credentials) validate() error {
	switch {
	case strings.TrimSpace(c.VCenter) == "":
		return problem.BadRequest("vcenter", "vcenter is required (host name or address, optionally :port)")
	case strings.ContainsAny(c.VCenter, "/ ") || strings.Contains(c.VCenter, "://"):
		return problem.BadRequest("vcenter", "vcenter must be a host name or address with an optional port, not %q", c.VCenter)
	case strings.TrimSpace(c.Username) == "":
		return problem.BadRequest("username", "username is required")
	case c.Password == "":
		return problem.BadRequest("password", "password is required")
	}
	return nil
}

// checkVCenter refuses a vCenter outside the allow list (403 naming the
// field) before anything is published or dialled.
func (a *API) checkVCenter(host string) error {
	if vcenter.AllowList(a.cfg.VCenterAllow).Permits(host) {
		return nil
	}
	return &problem.Error{Status: http.StatusForbidden, Field: "vcenter",
		Detail: fmt.Sprintf("vcenter %q is not one this VMA may log in to (-vcenter-allow)", host)}
}

// field is a request field and the property of the event it goes into.
type field struct {
	name  string
	value any
}

// checkFields checks fields against the schema of eventType (each field
// name is also its property); a violation is a 400 naming the field.
func (a *API) checkFields(eventType string, fields ...field) error {
	v, err := a.validator()
	if err != nil {
		return err
	}
	for _, f := range fields {
		if sealed, ok := f.value.(events.Sealed); ok {
			err = problem.CheckSealed(v, eventType, f.name, f.name, sealed)
		} else {
			err = problem.CheckField(v, eventType, f.name, f.name, f.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type discoverRequest struct {
	credentials
	Datacenter string `json:"datacenter"`
	Filter     string `json:"filter"`
}

func (a *API) discover(w http.ResponseWriter, r *http.Request) error {
	var req discoverRequest
	if err := problem.Decode(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	sealed, err := seal.Seal(a.cfg.Identity.PublicKey(), []byte(req.Password))
	if err != nil {
		return err
	}
	if err := a.checkFields(events.TypeDiscoverRequest, field{"vcenter", req.VCenter}, field{"username", req.Username},
		field{"password", sealed}, field{"datacenter", req.Datacenter}, field{"filter", req.Filter}); err != nil {
		return err
	}
	if err := a.checkVCenter(req.VCenter); err != nil {
		return err
	}
	dr := &events.DiscoverRequest{RequestID: events.NewID(), VMAID: a.cfg.Identity.ID, VCenter: req.VCenter,
		Username: req.Username, Password: sealed, Datacenter: req.Datacenter, Filter: req.Filter}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.DiscoverTimeout)
	defer cancel()
	res, err := a.conn.Discover(ctx, dr)
	switch {
	case errors.Is(err, bus.ErrNotPublished):
		return &problem.Error{Status: http.StatusServiceUnavailable, Detail: "the bus is not reachable: " + err.Error()}
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		return &problem.Error{Status: http.StatusGatewayTimeout, Detail: fmt.Sprintf("no discovery result within %s", a.cfg.DiscoverTimeout)}
	case err != nil:
		return err
	}
	if f := res.Error; f != nil {
		return failureProblem(f)
	}
	return problem.WriteJSON(w, http.StatusOK, discoverAnswer{VCenter: res.VCenter, VMs: nonNil(res.VMs)})
}

// failureProblem maps a discovery failure to its status.
func failureProblem(f *events.Failure) error {
	switch f.Code {
	case events.FailureAuth:
		return &problem.Error{Status: http.StatusUnauthorized, Field: "username", Detail: f.Message}
	case events.FailureUnreachable:
		return &problem.Error{Status: http.StatusBadGateway, Field: "vcenter", Detail: f.Message}
	case events.FailureNotFound:
		return &problem.Error{Status: http.StatusNotFound, Field: "datacenter", Detail: f.Message}
	case events.FailureInvalid:
		return &problem.Error{Status: http.StatusBadRequest, Detail: f.Message}
	}
	return &problem.Error{Status: http.StatusBadGateway, Detail: "discovery failed: " + f.Message}
}

type replicateRequest struct {
	credentials
	JobID      string   `json:"job_id"`
	VMPaths    []string `json:"vm_paths"`
	OMAURL     string   `json:"oma_url"`
	OnCBTReset string   `json:"on_cbt_reset"`
	Verify     *bool    `json:"verify"`
}

func (a *API) replicate(w http.ResponseWriter, r *http.Request) error {
	var req replicateRequest
	if err := problem.Decode(w, r, &req); err != nil {
		return err
	}
	if req.JobID == "" {
		return problem.BadRequest("job_id", "job_id is required (the OMA's job id, such as repl-vm-143233-1754407216)")
	}
	if err := subject.ValidID(req.JobID); err != nil {
		return problem.BadRequest("job_id", "job_id: %v", err)
	}
	if err := req.validate(); err != nil {
		return err
	}
	if len(req.VMPaths) == 0 {
		return problem.BadRequest("vm_paths", "vm_paths is required: inventory paths such as /DatabanxDC/vm/PGWINTESTBIOS")
	}
	for i, p := range req.VMPaths {
		if !strings.HasPrefix(p, "/") || len(p) < 2 {
			return problem.BadRequest(fmt.Sprintf("vm_paths[%d]", i), "vm_paths[%d] must be an inventory path starting with /, not %q", i, p)
		}
	}
	switch req.OnCBTReset {
	case "", events.OnCBTResetFail, events.OnCBTResetFull:
	default:
		return problem.BadRequest("on_cbt_reset", "on_cbt_reset must be %q (the default) or %q, not %q", events.OnCBTResetFail, events.OnCBTResetFull, req.OnCBTReset)
	}
	if u, err := url.Parse(req.OMAURL); req.OMAURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return problem.BadRequest("oma_url", "oma_url must be an http(s) URL such as http://localhost:8082, not %q", req.OMAURL)
	}
	sealed, err := seal.Seal(a.cfg.Identity.PublicKey(), []byte(req.Password))
	if err != nil {
		return err
	}
	if err := a.checkFields(events.TypeReplicateCommand, field{"job_id", req.JobID}, field{"vcenter", req.VCenter},
		field{"username", req.Username}, field{"password", sealed}, field{"vm_paths", req.VMPaths}, field{"oma_url", req.OMAURL}); err != nil {
		return err
	}
	if err := a.checkVCenter(req.VCenter); err != nil {
		return err
	}
	if err := a.checkJob(r.Context(), req.JobID, req.VMPaths); err != nil {
		return err
	}
	cmd := &events.ReplicateCommand{JobID: req.JobID, VMAID: a.cfg.Identity.ID, VCenter: req.VCenter, Username: req.Username,
		Password: sealed, VMPaths: req.VMPaths, OMAURL: req.OMAURL, OnCBTReset: req.OnCBTReset, Verify: req.Verify}
	ev, err := events.New("/godwit/vma/"+a.cfg.Identity.ID, cmd, a.cfg.Now())
	if err != nil {
		return problem.BadRequest("", "%v", err)
	}
	job, isNew, err := a.store.Accept(store.Job{JobID: req.JobID, EventID: ev.ID, VMPaths: req.VMPaths, AcceptedAt: a.cfg.Now().UTC()})
	if err != nil {
		return err
	}
	if !isNew && !slices.Equal(job.VMPaths, req.VMPaths) {
		return &problem.Error{Status: http.StatusConflict, Field: "job_id", Detail: fmt.Sprintf("job %s was accepted for other VMs (%s)", req.JobID, strings.Join(job.VMPaths, ", "))}
	}
	// The job waits in the OMA's one queue, like any other: the OMA sends
	// the command back when a slot is free under every limit. A repeated
	// request is answered with the job's state, and queues nothing more.
	state, err := a.startOnOMA(r.Context(), cmd)
	if err != nil {
		return err
	}
	return problem.WriteJSON(w, http.StatusAccepted, replicateAnswer{JobID: req.JobID, Status: events.StatusAccepted, State: state})
}

// startOnOMA asks the OMA to queue cmd's job, and returns the job's state
// on the OMA.
func (a *API) startOnOMA(ctx context.Context, cmd *events.ReplicateCommand) (string, error) {
	subj, err := subject.StartRequest(a.cfg.Identity.ID, cmd.JobID)
	if err != nil {
		return "", problem.BadRequest("job_id", "job_id: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, allocationTimeout)
	defer cancel()
	var reply struct {
		State string `json:"state"`
	}
	err = a.conn.RequestServed(ctx, subj, cmd, &reply)
	var re *bus.RemoteError
	switch {
	case errors.As(err, &re) && re.Code == bus.CodeNotFound:
		return "", &problem.Error{Status: http.StatusNotFound, Field: "job_id", Detail: fmt.Sprintf("the OMA has no job %s for VMA %s: create it with POST /api/v1/replications on the OMA", cmd.JobID, a.cfg.Identity.ID)}
	case errors.As(err, &re) && (re.Code == bus.CodeConflict || re.Code == bus.CodeMoved):
		return "", &problem.Error{Status: http.StatusConflict, Field: "job_id", Detail: "the OMA refuses to start it: " + re.Message}
	case err != nil:
		return "", &problem.Error{Status: http.StatusServiceUnavailable, Detail: "the OMA did not queue job " + cmd.JobID + ": " + err.Error()}
	}
	return reply.State, nil
}

// nonNil is s, or an empty slice for nil (JSON [], not null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
