package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/secret"
)

// vcenterRequest is the body of POST /api/v1/vcenters.
type vcenterRequest struct {
	Name        string        `json:"name"`
	Host        string        `json:"host"`
	Username    string        `json:"username"`
	Password    secret.String `json:"password"`
	Datacenters []string      `json:"datacenters"`
	CAPEM       string        `json:"ca_pem"`
	Thumbprint  string        `json:"thumbprint"`
	VMAs        []string      `json:"vmas"`
	// Limits bound the jobs reading from the vCenter at once.
	Limits store.SourceLimits `json:"limits"`
}

func (a *API) createVCenter(w http.ResponseWriter, r *http.Request) error {
	var req vcenterRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	v, err := a.ctl.VCenters().Create(r.Context(), vcenters.Spec{Name: req.Name, Credentials: vcenters.Credentials{
		Host: req.Host, Username: req.Username, Password: req.Password, Datacenters: req.Datacenters,
		CAPEM: req.CAPEM, Thumbprint: req.Thumbprint, VMAs: req.VMAs}, Limits: req.Limits})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/vcenters/"+v.Name)
	return writeJSON(w, http.StatusCreated, v)
}

func (a *API) listVCenters(w http.ResponseWriter, _ *http.Request) error {
	list, err := a.ctl.VCenters().List()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, vcenterList{VCenters: nonNil(list)})
}

func (a *API) getVCenter(w http.ResponseWriter, r *http.Request) error {
	v, err := a.ctl.VCenters().Get(mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) updateVCenter(w http.ResponseWriter, r *http.Request) error {
	var req vcenterUpdate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ch := vcenters.Change{Password: req.Password, VMAs: req.VMAs, Limits: req.Limits}
	if req.Limits != nil {
		ch.Also = func(tx *bbolt.Tx, v store.VCenter) error {
			l := queue.Fill(v.Limits, queue.DefaultSourceLimits)
			return a.ctl.Queue().LimitsChanged(tx, &events.QueueLimits{Object: events.LimitsVCenter, Name: v.Name,
				VCenter: l.VCenter, ESXiHost: l.ESXiHost, Datastore: l.Datastore})
		}
	}
	v, err := a.ctl.VCenters().Update(r.Context(), mux.Vars(r)["name"], ch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (a *API) deleteVCenter(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctl.VCenters().Delete(mux.Vars(r)["name"], plans.UsesVCenter); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// planRequest is the body of POST /api/v1/plans.
type planRequest struct {
	Name       string              `json:"name"`
	VCenter    string              `json:"vcenter"`
	VMs        []string            `json:"vms"`
	Waves      [][]string          `json:"waves"`
	Sync       events.PlanSchedule `json:"sync"`
	Verify     *bool               `json:"verify"`
	OnCBTReset string              `json:"on_cbt_reset"`
	Limits     store.PlanLimits    `json:"limits"`
	Priority   int                 `json:"priority"`
	Force      bool                `json:"force"`
	Cutover    store.PlanCutover   `json:"cutover"`
}

func (a *API) createPlan(w http.ResponseWriter, r *http.Request) error {
	var req planRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	v, err := a.ctl.Plans().Create(r.Context(), plans.Spec{Name: req.Name, VCenter: req.VCenter, VMs: req.VMs, Waves: req.Waves,
		Sync: req.Sync, Verify: req.Verify, OnCBTReset: req.OnCBTReset, Limits: req.Limits, Priority: req.Priority, Force: req.Force, Cutover: req.Cutover, Token: holderOf(r).Name})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/plans/"+v.Name)
	return writeJSON(w, http.StatusCreated, v)
}

func (a *API) listPlans(w http.ResponseWriter, r *http.Request) error {
	list, err := a.ctl.Plans().List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, planList{Plans: nonNil(list)})
}

func (a *API) getPlan(w http.ResponseWriter, r *http.Request) error {
	v, err := a.ctl.Plans().Get(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	a.withPredictions(&v)
	return writeJSON(w, http.StatusOK, v)
}

// planPatch is the body of PATCH /api/v1/plans/{name}.
type planPatch struct {
	AddVMs      []string             `json:"add_vms"`
	RemoveVMs   []string             `json:"remove_vms"`
	Sync        *events.PlanSchedule `json:"sync"`
	Waves       [][]string           `json:"waves"`
	Limits      *store.PlanLimits    `json:"limits"`
	Priority    *int                 `json:"priority"`
	Rate        *int64               `json:"rate"`
	RateWindows *[]store.RateWindow  `json:"rate_windows"`
	Cutover     *store.PlanCutover   `json:"cutover"`
}

func (a *API) patchPlan(w http.ResponseWriter, r *http.Request) error {
	var req planPatch
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.AddVMs == nil && req.RemoveVMs == nil && req.Sync == nil && req.Waves == nil && req.Limits == nil && req.Priority == nil && req.Rate == nil && req.RateWindows == nil && req.Cutover == nil {
		return badRequest("", "nothing to change: give add_vms, remove_vms, sync, waves, limits, priority, rate, rate_windows or cutover")
	}
	v, err := a.ctl.Plans().Update(r.Context(), mux.Vars(r)["name"], plans.Patch{AddVMs: req.AddVMs, RemoveVMs: req.RemoveVMs,
		Sync: req.Sync, Waves: req.Waves, Limits: req.Limits, Priority: req.Priority, Cutover: req.Cutover,
		Rate: store.RateChange{Rate: req.Rate, Windows: req.RateWindows}})
	if err != nil {
		return err
	}
	a.ctl.Queue().Kick()
	return writeJSON(w, http.StatusOK, v)
}

// planAction is a POST on a plan without a body: pause, resume, sync.
func (a *API) planAction(act func(*API, *http.Request, string) (plans.View, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := noBody(w, r); err != nil {
			return err
		}
		v, err := act(a, r, mux.Vars(r)["name"])
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	}
}

func pausePlan(a *API, r *http.Request, name string) (plans.View, error) {
	return a.ctl.Plans().SetPaused(r.Context(), name, true)
}

func resumePlan(a *API, r *http.Request, name string) (plans.View, error) {
	return a.ctl.Plans().SetPaused(r.Context(), name, false)
}

func syncPlan(a *API, r *http.Request, name string) (plans.View, error) {
	return a.ctl.Plans().SyncNow(r.Context(), name)
}

func retryPlanVM(a *API, r *http.Request, name string) (plans.View, error) {
	return a.ctl.Plans().Retry(r.Context(), name, mux.Vars(r)["vm"])
}

func (a *API) deletePlan(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctl.Plans().Delete(r.Context(), mux.Vars(r)["name"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) preflightPlan(w http.ResponseWriter, r *http.Request) error {
	rep, err := a.ctl.Plans().Preflight(r.Context(), mux.Vars(r)["name"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

// noBody refuses a request body other than none, {} or null.
func noBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	var v struct{}
	return decode(w, r, &v)
}
