package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
)

// jobRow is a job as the API shows it: the fields the pages use.
type jobRow struct {
	JobID           string       `json:"job_id"`
	VMAID           string       `json:"vma_id"`
	SourceVM        events.VMRef `json:"source_vm"`
	ReplicationType string       `json:"replication_type"`
	State           string       `json:"state"`
	Plan            string       `json:"plan"`
	events.Figures
	BytesWritten int64 `json:"bytes_written"`
	ZeroBytes    int64 `json:"zero_bytes"`
	RateLimit    int64 `json:"rate_limit"`
	Disks        []struct {
		Key                int32  `json:"key"`
		Label              string `json:"label"`
		CapacityBytes      int64  `json:"capacity_bytes"`
		BytesTotal         int64  `json:"bytes_total"`
		BytesDone          int64  `json:"bytes_done"`
		RateBytesPerSecond int64  `json:"rate_bytes_per_second"`
		Checkpoint         int64  `json:"checkpoint"`
		Verified           bool   `json:"verified"`
	} `json:"disks"`
	LastError string `json:"last_error"`
	ErrorCode string `json:"error_code"`
	Queue     *struct {
		Position   int    `json:"position"`
		WaitingFor string `json:"waiting_for"`
	} `json:"queue"`
	PauseRequestedAt *time.Time `json:"pause_requested_at"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	FinishedAt       *time.Time `json:"finished_at"`
}

// vmaRow is a VMA as GET /api/v1/vmas shows it.
type vmaRow struct {
	ID             string               `json:"id"`
	Connected      bool                 `json:"connected"`
	Capacity       int                  `json:"capacity"`
	Running        int                  `json:"running"`
	Queued         int                  `json:"queued"`
	BytesPerSecond int64                `json:"bytes_per_second"`
	RateLimit      int64                `json:"rate_limit"`
	LastSeen       *time.Time           `json:"last_seen"`
	Tunnel         *store.TunnelOutages `json:"tunnel"`
}

type overviewData struct {
	VMAs     []vmaRow
	States   []stateCount
	Chart    chart
	Plans    []plans.View
	Failures []jobRow
	PlanVMs  []failedPlanVM
	Now      time.Time
}

type stateCount struct {
	State string
	N     int
}

type failedPlanVM struct {
	Plan, Name, State, Error string
}

// overview is the first page: VMAs, jobs by state, the last hour's
// throughput, plans, and what failed.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	var vmas struct {
		VMAs []vmaRow `json:"vmas"`
	}
	var jobs struct {
		Replications []jobRow `json:"replications"`
	}
	var ps struct {
		Plans []plans.View `json:"plans"`
	}
	for _, q := range []struct {
		path string
		out  any
	}{{"/api/v1/vmas", &vmas}, {"/api/v1/replications", &jobs}, {"/api/v1/plans", &ps}} {
		if err := c.call(r.Context(), s.token, http.MethodGet, q.path, nil, q.out); err != nil {
			c.apiFail(w, r, err)
			return
		}
	}
	d := overviewData{VMAs: vmas.VMAs, Chart: c.rates.chart(c.cfg.Now()), Plans: ps.Plans, Now: c.cfg.Now()}
	counts := map[string]int{}
	day := c.cfg.Now().Add(-24 * time.Hour)
	for _, j := range jobs.Replications {
		counts[j.State]++
		if j.State == events.JobFailed && j.UpdatedAt.After(day) && len(d.Failures) < 10 {
			d.Failures = append(d.Failures, j)
		}
	}
	for _, st := range events.JobStates() {
		if counts[st] > 0 {
			d.States = append(d.States, stateCount{st, counts[st]})
		}
	}
	for _, p := range ps.Plans {
		for _, vm := range p.VMs {
			if vm.State == events.PlanVMFailed || vm.State == events.PlanVMPaused {
				d.PlanVMs = append(d.PlanVMs, failedPlanVM{Plan: p.Name, Name: vm.Name, State: vm.State, Error: cmp.Or(vm.PauseReason, vm.LastError)})
			}
		}
	}
	c.render(w, r, http.StatusOK, "overview", view{Title: "Overview", Stream: streamURL("godwit.job.>", "godwit.status.>", "godwit.plan.>", "godwit.tunnel.>", "godwit.vma.heartbeat.*"),
		Flash: r.URL.Query().Get("done"), Data: d})
}

// inventoryVM is a discovered VM with the plan it is in.
type inventoryVM struct {
	inventory.VM
	Folder string
	Plan   string
}

// maxListed bounds the VMs the inventory page lists: a filter narrows
// the rest.
const maxListed = 500

type inventoryData struct {
	VMs []inventoryVM
	// Total is every VM discovered, Matching those the filter keeps (of
	// which VMs lists maxListed at most).
	Total, Matching int
	Filter          inventoryFilter
	VCenters        []string // from the inventory, for the filter
	DCs             []string
	Folders         []string
	// Registered are the registered vCenters a plan can name.
	Registered []vcenters.View
}

type inventoryFilter struct {
	Q, VCenter, Datacenter, Folder, Power, CBT string
}

func (f inventoryFilter) keep(vm inventoryVM) bool {
	return (f.Q == "" || strings.Contains(strings.ToLower(vm.Name+" "+vm.Path+" "+vm.ID), strings.ToLower(f.Q))) &&
		(f.VCenter == "" || vm.VCenter == f.VCenter) && (f.Datacenter == "" || vm.Datacenter == f.Datacenter) &&
		(f.Folder == "" || vm.Folder == f.Folder) && (f.Power == "" || vm.PowerState == f.Power) &&
		(f.CBT == "" || (f.CBT == "on") == vm.CBTEnabled)
}

// inventory lists the discovered VMs, filtered, each with its replica and
// plan, and a form that makes a plan of those selected.
func (c *Console) inventory(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	var inv struct {
		VMs []inventory.VM `json:"vms"`
	}
	var ps struct {
		Plans []plans.View `json:"plans"`
	}
	var vcs struct {
		VCenters []vcenters.View `json:"vcenters"`
	}
	for _, q := range []struct {
		path string
		out  any
	}{{"/api/v1/vms", &inv}, {"/api/v1/plans", &ps}, {"/api/v1/vcenters", &vcs}} {
		if err := c.call(r.Context(), s.token, http.MethodGet, q.path, nil, q.out); err != nil {
			c.apiFail(w, r, err)
			return
		}
	}
	planOf := map[string]string{}
	for _, p := range ps.Plans {
		for _, vm := range p.VMs {
			planOf[vm.ID] = p.Name
		}
	}
	q := r.URL.Query()
	f := inventoryFilter{Q: q.Get("q"), VCenter: q.Get("vcenter"), Datacenter: q.Get("datacenter"), Folder: q.Get("folder"), Power: q.Get("power"), CBT: q.Get("cbt")}
	d := inventoryData{Filter: f, Total: len(inv.VMs), Registered: vcs.VCenters}
	seen := map[string]bool{}
	add := func(list *[]string, v string) {
		if v != "" && !seen[fmt.Sprintf("%p%s", list, v)] {
			seen[fmt.Sprintf("%p%s", list, v)] = true
			*list = append(*list, v)
		}
	}
	for _, vm := range inv.VMs {
		row := inventoryVM{VM: vm, Folder: path.Dir(vm.Path), Plan: planOf[vm.ID]}
		add(&d.VCenters, vm.VCenter)
		add(&d.DCs, vm.Datacenter)
		add(&d.Folders, row.Folder)
		if f.keep(row) {
			d.VMs = append(d.VMs, row)
		}
	}
	slices.SortFunc(d.VMs, func(a, b inventoryVM) int { return cmp.Compare(a.Path, b.Path) })
	d.Matching = len(d.VMs)
	if len(d.VMs) > maxListed {
		d.VMs = d.VMs[:maxListed]
	}
	for _, l := range [][]string{d.VCenters, d.DCs, d.Folders} {
		slices.Sort(l)
	}
	c.render(w, r, http.StatusOK, "inventory", view{Title: "Inventory", Flash: q.Get("done"), Data: d})
}

// createPlan makes a plan of the VMs selected on the inventory page.
func (c *Console) createPlan(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	name := strings.TrimSpace(r.PostFormValue("name"))
	body := map[string]any{"name": name, "vcenter": r.PostFormValue("vcenter"), "vms": r.PostForm["vm"],
		"sync": map[string]any{"interval": cmp.Or(strings.TrimSpace(r.PostFormValue("interval")), "24h")}}
	if err := c.call(r.Context(), s.token, http.MethodPost, "/api/v1/plans", body, nil); err != nil {
		c.apiFail(w, r, err)
		return
	}
	back(w, r, "/plans/"+url.PathEscape(name), "Plan "+name+" created: its preflight ran, and its VMs' first copies start when it passes.")
}

type planData struct {
	Plan plans.View
	// Predicted is the longest predicted downtime of its VMs, what a
	// cutover of the plan costs at least.
	Predicted *float64
}

// plan shows a plan: its VMs, their syncs and predicted downtime, its
// preflight, and its actions.
func (c *Console) plan(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	name := r.PathValue("name")
	var p plans.View
	if err := c.call(r.Context(), s.token, http.MethodGet, "/api/v1/plans/"+url.PathEscape(name), nil, &p); err != nil {
		c.apiFail(w, r, err)
		return
	}
	d := planData{Plan: p}
	for _, vm := range p.VMs {
		if vm.PredictedDowntimeSeconds != nil && (d.Predicted == nil || *vm.PredictedDowntimeSeconds > *d.Predicted) {
			d.Predicted = vm.PredictedDowntimeSeconds
		}
	}
	c.render(w, r, http.StatusOK, "plan", view{Title: "Plan " + p.Name, Flash: r.URL.Query().Get("done"), Data: d,
		Stream: streamURL("godwit.plan.*."+p.Name, "godwit.plan.*."+p.Name+".*", "godwit.job.>", "godwit.status.>")})
}

// apiCall is what an action asks of the API, and what the page says once
// it is done.
type apiCall struct {
	method, path string
	body         any
	flash        string
}

// errNoAction answers an action the console does not have.
var errNoAction = errors.New("no such action")

// act runs the call an action makes (built by build from the form) and
// sends the browser back to page, saying what it did; a form the console
// cannot read is 400, an unknown action 404, and the API's refusal its own
// status.
func (c *Console) act(w http.ResponseWriter, r *http.Request, page string, build func() (apiCall, error)) {
	s := sessionOf(r)
	call, err := build()
	switch {
	case errors.Is(err, errNoAction):
		c.fail(w, r, s, http.StatusNotFound, "No such action: "+r.PathValue("action"))
		return
	case err != nil:
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	if err := c.call(r.Context(), s.token, call.method, call.path, call.body, nil); err != nil {
		c.apiFail(w, r, err)
		return
	}
	back(w, r, page, call.flash)
}

// rateCall is the PATCH of path's bandwidth limit from the form's rate.
func rateCall(r *http.Request, path string) (apiCall, error) {
	rate, err := parseRate(r.PostFormValue("rate"))
	if err != nil {
		return apiCall{}, fmt.Errorf("rate: %w", err)
	}
	return apiCall{http.MethodPatch, path, map[string]any{"rate": rate}, "Bandwidth limit set."}, nil
}

// planAction runs one of a plan's actions through the API.
func (c *Console) planAction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	base := "/api/v1/plans/" + url.PathEscape(name)
	if r.PathValue("action") == "preflight" {
		var rep plans.Report
		if err := c.call(r.Context(), sessionOf(r).token, http.MethodGet, base+"/preflight", nil, &rep); err != nil {
			c.apiFail(w, r, err)
			return
		}
		back(w, r, "/plans/"+url.PathEscape(name), fmt.Sprintf("Preflight: %s, %d errors, %d warnings.", rep.Status, rep.Errors, rep.Warnings))
		return
	}
	c.act(w, r, "/plans/"+url.PathEscape(name), func() (apiCall, error) {
		post := func(suffix string, body any, flash string) (apiCall, error) {
			return apiCall{http.MethodPost, base + suffix, body, flash}, nil
		}
		switch r.PathValue("action") {
		case "sync":
			return post("/sync", nil, "A sync of every VM is due now.")
		case "pause":
			return post("/pause", nil, "Paused: no new sync starts.")
		case "resume":
			return post("/resume", nil, "Resumed.")
		case "rate":
			return rateCall(r, base)
		case "schedule":
			return apiCall{http.MethodPatch, base, map[string]any{"sync": map[string]any{"interval": strings.TrimSpace(r.PostFormValue("interval"))}}, "Schedule changed."}, nil
		case "cutover":
			return post("/cutover", map[string]any{"convert": r.PostFormValue("convert") == "on", "boot_check": r.PostFormValue("boot_check") == "on"}, "Cutover started.")
		case "cutover-rollback":
			return post("/cutover/rollback", map[string]any{}, "Rollback started.")
		case "cutover-commit":
			return post("/cutover/commit", map[string]any{}, "Committed.")
		}
		return apiCall{}, errNoAction
	})
}

// parseRate reads a rate in bytes per second: a number with an optional
// K, M or G (of 1024), 0 for none.
func parseRate(s string) (int64, error) {
	s = strings.ToUpper(strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "B")))
	mult := int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a number of bytes per second (such as 50M, 0 for none)", s)
	}
	return n * mult, nil
}

type jobData struct {
	Job      jobRow
	Timeline []line
}

// line is one line of a timeline or of the events page.
type line struct {
	At      time.Time
	Subject string
	Type    string
	Text    string
}

// job shows a job's live figures per disk, its event timeline from the
// bus, and its actions.
func (c *Console) job(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	id := r.PathValue("id")
	var j jobRow
	if err := c.call(r.Context(), s.token, http.MethodGet, "/api/v1/replications/"+url.PathEscape(id), nil, &j); err != nil {
		c.apiFail(w, r, err)
		return
	}
	d := jobData{Job: j}
	if r.URL.Query().Get("partial") != "1" {
		msgs, err := c.hub.history(r.Context(), jobSubjects(id))
		if err != nil {
			c.log.Warn("console: a job's timeline", "job", id, "err", err)
		}
		f := newFormatter()
		for _, m := range msgs {
			if ln, ok := f.format(m); ok && ln.keep {
				d.Timeline = append(d.Timeline, ln.line)
			}
		}
		slices.Reverse(d.Timeline) // newest first
	}
	c.render(w, r, http.StatusOK, "job", view{Title: "Job " + j.JobID, Flash: r.URL.Query().Get("done"), Data: d, Stream: streamURL(jobSubjects(id)...)})
}

// jobSubjects are the subjects of job id's events.
func jobSubjects(id string) []string {
	return []string{"godwit.progress.*." + id, "godwit.status.*." + id, "godwit.job.*.*." + id}
}

// jobAction runs one of a job's actions through the API.
func (c *Console) jobAction(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	base := "/api/v1/replications/" + url.PathEscape(id)
	c.act(w, r, "/jobs/"+url.PathEscape(id), func() (apiCall, error) {
		switch r.PathValue("action") {
		case "cancel":
			return apiCall{http.MethodDelete, base, nil, "Cancelled."}, nil
		case "pause":
			return apiCall{http.MethodPost, base + "/pause", nil, "Pause asked: the job stops at its next checkpoint."}, nil
		case "resume":
			return apiCall{http.MethodPost, base + "/resume", nil, "Resumed: the job waits in the queue for its slot."}, nil
		case "rate":
			return rateCall(r, base)
		}
		return apiCall{}, errNoAction
	})
}

type eventsData struct {
	Subject string
	Lines   []line
}

// eventsPage shows the live stream as the observer sees it, filtered by
// subject.
func (c *Console) eventsPage(w http.ResponseWriter, r *http.Request) {
	subj := strings.TrimSpace(r.URL.Query().Get("subject"))
	if subj == "" {
		subj = "godwit.>"
	}
	if !validPattern(subj) {
		c.fail(w, r, sessionOf(r), http.StatusBadRequest, "subject: "+subj+" is not a subject pattern (tokens of letters, digits, - and _, or * and >, joined by dots)")
		return
	}
	d := eventsData{Subject: subj}
	f := newFormatter()
	for _, m := range c.hub.recent([]string{subj}, 50) {
		if ln, ok := f.format(m); ok {
			d.Lines = append(d.Lines, ln.line)
		}
	}
	slices.Reverse(d.Lines)
	c.render(w, r, http.StatusOK, "events", view{Title: "Events", Stream: streamURL(subj), Data: d})
}

// validPattern reports whether p is a NATS subject pattern the console
// takes.
func validPattern(p string) bool {
	if p == "" || len(p) > 256 {
		return false
	}
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">":
			if i != len(toks)-1 {
				return false
			}
		case t == "" || strings.ContainsFunc(t, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}):
			return false
		}
	}
	return true
}

// streamURL is the URL of the event stream of the subject patterns.
func streamURL(subjects ...string) string {
	q := url.Values{"subject": subjects}
	return "/stream?" + q.Encode()
}

type referenceData struct {
	Tags []referenceTag
}

type referenceTag struct {
	Name string
	Ops  []referenceOp
}

type referenceOp struct {
	Method, Path, Summary, Scope string
	Statuses                     []string
}

// reference lists the API's operations from its OpenAPI document.
func (c *Console) reference(w http.ResponseWriter, r *http.Request) {
	s := sessionOf(r)
	var doc struct {
		Paths map[string]map[string]struct {
			Summary   string                     `json:"summary"`
			Tags      []string                   `json:"tags"`
			Scope     string                     `json:"x-scope"`
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := c.call(r.Context(), s.token, http.MethodGet, "/api/v1/openapi.json", nil, &doc); err != nil {
		c.apiFail(w, r, err)
		return
	}
	byTag := map[string][]referenceOp{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			ro := referenceOp{Method: strings.ToUpper(method), Path: p, Summary: op.Summary, Scope: cmp.Or(op.Scope, "none")}
			for st := range op.Responses {
				ro.Statuses = append(ro.Statuses, st)
			}
			slices.Sort(ro.Statuses)
			byTag[tag] = append(byTag[tag], ro)
		}
	}
	var d referenceData
	for tag, ops := range byTag {
		slices.SortFunc(ops, func(a, b referenceOp) int {
			return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
		})
		d.Tags = append(d.Tags, referenceTag{Name: tag, Ops: ops})
	}
	slices.SortFunc(d.Tags, func(a, b referenceTag) int { return cmp.Compare(a.Name, b.Name) })
	c.render(w, r, http.StatusOK, "reference", view{Title: "API reference", Data: d})
}
