// Package api serves the VMA's REST API, which the OMA reaches as
// http://localhost:9081 through the tunnel. Handlers validate, publish on
// the bus, and (for discovery) wait for the answer; the password of a
// request is sealed to this VMA's key before it is published, and never
// logged.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/httpserver"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/vma/identity"
	"github.com/godwit/godwit/vma/store"
)

// Config configures the API. Identity is required.
type Config struct {
	Identity identity.Identity
	Version  string
	// DiscoverTimeout bounds the wait for a discovery result; 0 means 60s.
	DiscoverTimeout time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
}

// API is the VMA REST API.
type API struct {
	cfg     Config
	conn    *bus.Conn
	store   *store.Store
	log     *slog.Logger
	started time.Time
}

// New returns the API.
func New(conn *bus.Conn, st *store.Store, cfg Config) *API {
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
	return &API{cfg: cfg, conn: conn, store: st, log: log, started: cfg.Now()}
}

// Handler returns the HTTP handler.
func (a *API) Handler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path)
	})
	v1 := r.PathPrefix("/api/v1").Subrouter()
	v1.Handle("/health", a.handle(a.health)).Methods(http.MethodGet)
	v1.Handle("/discover", a.handle(a.discover)).Methods(http.MethodPost)
	v1.Handle("/replicate", a.handle(a.replicate)).Methods(http.MethodPost)
	return r
}

// Serve serves the API on l until ctx ends, then drains requests.
func (a *API) Serve(ctx context.Context, l net.Listener) error {
	return httpserver.Serve(ctx, l, a.Handler(), a.log)
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

func (a *API) health(w http.ResponseWriter, _ *http.Request) error {
	connected := a.conn.Connected()
	status := "ok"
	if !connected {
		status = "degraded"
	}
	return problem.WriteJSON(w, http.StatusOK, map[string]any{
		"status": status, "vma_id": a.cfg.Identity.ID, "version": a.cfg.Version,
		"uptime_seconds": int64(a.cfg.Now().Sub(a.started).Seconds()),
		"public_key":     a.cfg.Identity.PublicKey(),
		"bus":            map[string]any{"connected": connected, "state": strings.ToLower(a.conn.NATS().Status().String())},
	})
}

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
	dr := &events.DiscoverRequest{RequestID: events.NewID(), VMAID: a.cfg.Identity.ID, VCenter: req.VCenter,
		Username: req.Username, Password: sealed, Datacenter: req.Datacenter, Filter: req.Filter}
	resultSubject, err := subject.DiscoverResult(dr.VMAID, dr.RequestID)
	if err != nil {
		return err
	}
	sub, err := a.conn.NATS().SubscribeSync(resultSubject)
	if err != nil {
		return fmt.Errorf("wait for discover result: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if _, err := a.conn.Publish(r.Context(), dr); err != nil {
		return &problem.Error{Status: http.StatusServiceUnavailable, Detail: "the bus is not reachable: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.DiscoverTimeout)
	defer cancel()
	var pages events.DiscoverPages
	for !pages.Complete() {
		msg, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return &problem.Error{Status: http.StatusGatewayTimeout, Detail: fmt.Sprintf("no discovery result within %s", a.cfg.DiscoverTimeout)}
		}
		if err != nil {
			return fmt.Errorf("wait for discover result: %w", err)
		}
		var ev events.Event
		var page events.DiscoverResult
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			return fmt.Errorf("decode discover result: %w", err)
		}
		if err := ev.Decode(&page); err != nil {
			return err
		}
		pages.Add(page)
	}
	res := pages.Result()
	if f := res.Error; f != nil {
		return failureProblem(f)
	}
	return problem.WriteJSON(w, http.StatusOK, map[string]any{"vcenter": res.VCenter, "vms": res.VMs})
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
	JobID   string   `json:"job_id"`
	VMPaths []string `json:"vm_paths"`
	OMAURL  string   `json:"oma_url"`
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
	if u, err := url.Parse(req.OMAURL); req.OMAURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return problem.BadRequest("oma_url", "oma_url must be an http(s) URL such as http://localhost:8082, not %q", req.OMAURL)
	}
	sealed, err := seal.Seal(a.cfg.Identity.PublicKey(), []byte(req.Password))
	if err != nil {
		return err
	}
	cmd := &events.ReplicateCommand{JobID: req.JobID, VMAID: a.cfg.Identity.ID, VCenter: req.VCenter, Username: req.Username,
		Password: sealed, VMPaths: req.VMPaths, OMAURL: req.OMAURL}
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
	// A repeated request publishes under the first request's event id, so
	// JetStream stores the command once, and a request whose publish failed
	// (or crashed) can simply be retried.
	ev.ID = job.EventID
	if _, err := a.conn.PublishEvent(r.Context(), ev); err != nil {
		return &problem.Error{Status: http.StatusServiceUnavailable, Detail: "the bus is not reachable: " + err.Error()}
	}
	return problem.WriteJSON(w, http.StatusAccepted, map[string]string{"job_id": req.JobID, "status": events.StatusAccepted})
}
