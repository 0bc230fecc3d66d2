package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/cutover"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
)

// cutoverRequest is the body of POST /api/v1/vms/{id}/cutover and
// /api/v1/plans/{name}/cutover.
type cutoverRequest struct {
	// VMs names the plan's VMs to cut over (all when empty); plans only.
	VMs []string `json:"vms"`
	// VMAID and VCenter narrow a VM id found several times; VMs only.
	VMAID           string     `json:"vma_id"`
	VCenter         string     `json:"vcenter"`
	When            string     `json:"when"`
	At              *time.Time `json:"at"`
	BudgetSeconds   float64    `json:"downtime_budget_seconds"`
	MaxPasses       int        `json:"max_passes"`
	PowerOff        string     `json:"power_off"`
	ShutdownTimeout int        `json:"shutdown_timeout_seconds"`
	Convert         *bool      `json:"convert"`
	BootCheck       *bool      `json:"boot_check"`
	BootPrompt      string     `json:"boot_prompt"`
	TargetDir       string     `json:"target_dir"`
	Format          string     `json:"format"`
}

func (q cutoverRequest) request(r *http.Request) cutover.Request {
	return cutover.Request{When: q.When, At: q.At, BudgetSeconds: q.BudgetSeconds, MaxPasses: q.MaxPasses, PowerOff: q.PowerOff,
		ShutdownTimeout: q.ShutdownTimeout, Convert: q.Convert, BootCheck: q.BootCheck, BootPrompt: q.BootPrompt,
		TargetDir: q.TargetDir, Format: q.Format, Token: holderOf(r).Name}
}

// cutoverView is a cutover as the API shows it: with the prediction now.
type cutoverView struct {
	store.Cutover
	Prediction *cutover.Prediction `json:"prediction,omitempty"`
}

func (a *API) cutoverView(c store.Cutover) cutoverView {
	v := cutoverView{Cutover: c}
	if p, err := a.ctl.Cutovers().Predict(c); err == nil {
		v.Prediction = &p
	}
	return v
}

// vmRef is the VM {id} of r, narrowed by the vma_id and vcenter query parameters.
func vmRef(r *http.Request) inventory.Ref {
	q := r.URL.Query()
	return inventory.Ref{VMID: mux.Vars(r)["id"], VMAID: q.Get("vma_id"), VCenter: q.Get("vcenter")}
}

func (a *API) startVMCutover(w http.ResponseWriter, r *http.Request) error {
	var req cutoverRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if len(req.VMs) > 0 {
		return fault.Errorf(fault.Invalid, "vms", "vms is for a plan's cutover (POST /api/v1/plans/{name}/cutover); this one is VM %s", mux.Vars(r)["id"])
	}
	cr := req.request(r)
	cr.VM = inventory.Ref{VMID: mux.Vars(r)["id"], VMAID: req.VMAID, VCenter: req.VCenter}
	c, err := a.ctl.Cutovers().Start(r.Context(), cr)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/vms/"+c.VM.ID+"/cutover")
	return writeJSON(w, http.StatusAccepted, a.cutoverView(c))
}

func (a *API) getVMCutover(w http.ResponseWriter, r *http.Request) error {
	c, err := a.ctl.Cutovers().Get(vmRef(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a.cutoverView(c))
}

func (a *API) cutoverConsole(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctl.Cutovers().Console(vmRef(r))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

func (a *API) cutoverScreenshot(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctl.Cutovers().Screenshot(vmRef(r))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

// vmCutoverAction is POST /api/v1/vms/{id}/cutover/{rollback,commit}.
func (a *API) vmCutoverAction(rollback bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		act := a.ctl.Cutovers().Commit
		if rollback {
			act = a.ctl.Cutovers().Rollback
		}
		c, err := act(r.Context(), vmRef(r))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusAccepted, a.cutoverView(c))
	}
}

func (a *API) startPlanCutover(w http.ResponseWriter, r *http.Request) error {
	var req cutoverRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.VMAID != "" || req.VCenter != "" {
		return fault.Errorf(fault.Invalid, "vma_id", "a plan names its VMs' VMA and vCenter: name VMs with vms")
	}
	list, err := a.ctl.Cutovers().StartPlan(r.Context(), mux.Vars(r)["name"], req.VMs, req.request(r))
	if err != nil {
		return err
	}
	out := make([]cutoverView, 0, len(list))
	for _, c := range list {
		out = append(out, a.cutoverView(c))
	}
	return writeJSON(w, http.StatusAccepted, cutoverList{Cutovers: out})
}

// planCutoverAction is POST /api/v1/plans/{name}/cutover/{rollback,commit}:
// for the plan's VMs named in vms, or all those with a cutover.
func (a *API) planCutoverAction(rollback bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req vmsRequest
		if err := decode(w, r, &req); err != nil {
			return err
		}
		p, err := a.ctl.Plans().Get(r.Context(), mux.Vars(r)["name"])
		if err != nil {
			return err
		}
		act := a.ctl.Cutovers().Commit
		if rollback {
			act = a.ctl.Cutovers().Rollback
		}
		out := []cutoverView{}
		for i, id := range req.VMs {
			if !hasVM(p, id) {
				return fault.Errorf(fault.NotFound, fmt.Sprintf("vms[%d]", i), "VM %s is not in plan %s", id, p.Name)
			}
		}
		for _, vm := range p.VMs {
			if (len(req.VMs) > 0 && !slices.Contains(req.VMs, vm.ID)) || (len(req.VMs) == 0 && vm.Cutover == "") {
				continue
			}
			c, err := act(r.Context(), inventory.Ref{VMID: vm.ID, VMAID: vm.VMAID})
			if err != nil {
				return err
			}
			out = append(out, a.cutoverView(c))
		}
		return writeJSON(w, http.StatusAccepted, cutoverList{Cutovers: out})
	}
}

// withPredictions adds each VM's predicted cutover downtime to a plan's
// view, and the measured one next to it once it is cut over.
func (a *API) withPredictions(v *plans.View) {
	synced := map[string]events.VMRef{}
	for _, vm := range v.VMs {
		if vm.LastSync != nil || vm.Cutover != "" {
			synced[vm.Replica] = events.VMRef{ID: vm.ID, Name: vm.Name, Path: vm.Path, InstanceUUID: vm.InstanceUUID}
		}
	}
	downs, err := a.ctl.Cutovers().DowntimesOf(synced)
	if err != nil {
		a.log.Warn("predict the downtimes of a plan's VMs", "plan", v.Name, "err", err)
		return
	}
	for i, vm := range v.VMs {
		d, ok := downs[vm.Replica]
		if !ok {
			continue
		}
		if vm.LastSync != nil {
			v.VMs[i].PredictedDowntimeSeconds = &d.Predicted
		}
		if vm.Cutover != "" && d.Measured > 0 {
			v.VMs[i].MeasuredDowntimeSeconds = &d.Measured
		}
	}
}

func hasVM(p plans.View, id string) bool {
	for _, vm := range p.VMs {
		if vm.ID == id {
			return true
		}
	}
	return false
}

// routeCutovers adds the cutover endpoints.
func (a *API) routeCutovers(route func(method, path string, need tokens.Scope, h func(http.ResponseWriter, *http.Request) error)) {
	route(http.MethodPost, "/vms/{id}/cutover", tokens.Operate, a.startVMCutover)
	route(http.MethodGet, "/vms/{id}/cutover", tokens.Read, a.getVMCutover)
	route(http.MethodGet, "/vms/{id}/cutover/console", tokens.Read, a.cutoverConsole)
	route(http.MethodGet, "/vms/{id}/cutover/screenshot", tokens.Read, a.cutoverScreenshot)
	route(http.MethodPost, "/vms/{id}/cutover/rollback", tokens.Operate, a.vmCutoverAction(true))
	route(http.MethodPost, "/vms/{id}/cutover/commit", tokens.Operate, a.vmCutoverAction(false))
	route(http.MethodPost, "/plans/{name}/cutover", tokens.Operate, a.startPlanCutover)
	route(http.MethodPost, "/plans/{name}/cutover/rollback", tokens.Operate, a.planCutoverAction(true))
	route(http.MethodPost, "/plans/{name}/cutover/commit", tokens.Operate, a.planCutoverAction(false))
}
