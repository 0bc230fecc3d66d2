package api

import (
	"net/http"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/plans"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/openapi"
)

// OpenAPI returns the OpenAPI 3.1 document of the OMA's API, served at
// GET /api/v1/openapi.json. Its operations are listed here by hand, apart
// from the router (Handler): TestOpenAPI fails when the two differ, and
// checks real requests and answers against the document.
func OpenAPI() ([]byte, error) {
	return openapi.JSON(openapi.Info{
		Title:   "godwit OMA API",
		Version: Version,
		Description: "The OMA's REST API: jobs (replications), discovery and inventory, VMAs, vCenters, plans, the queue, limits, " +
			"cutovers and tokens. Every operation but health and this document takes `Authorization: Bearer <token>`; the token's " +
			"scope (read: GET; operate: also jobs, discovery, plans and cutovers; admin: also tokens, VMAs and vCenters) must allow " +
			"the operation's `x-scope`, else 403 naming the scope. Errors are RFC 9457 problems (application/problem+json) whose " +
			"`field` names the request field at fault.",
		Problem: Problem{},
		Security: map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer",
			"description": "An API token (POST /api/v1/tokens; the OMA's initial token is in its data dir)."}},
		Enums: map[string][]string{
			"jobView.state":                       events.JobStates(),
			"jobView.replication_type":            {events.ReplicationInitial, events.ReplicationIncremental},
			"replicationRequest.replication_type": {events.ReplicationInitial, events.ReplicationIncremental},
			"healthAnswer.status":                 {"ok", "degraded"},
			"tokenRequest.scope":                  {string(tokens.Read), string(tokens.Operate), string(tokens.Admin)},
			"tokenSelf.scope":                     {string(tokens.Read), string(tokens.Operate), string(tokens.Admin)},
			"startRequest.on_cbt_reset":           {events.OnCBTResetFail, events.OnCBTResetFull},
			"cutoverRequest.when":                 {"now", "at", "budget"},
			"cutoverRequest.power_off":            {"guest", "hard", "guest-then-hard"},
			"cutoverRequest.format":               {"qcow2", "raw"},
		},
	}, omaOps())
}

// Response sets shared by the operations.
var (
	problemBody = Problem{}
	scopeBody   = scopeProblem{}
)

// answers builds an operation's responses: ok's status with its body, the
// errors every authenticated operation may answer, and extra statuses.
func answers(status int, body any, extra ...int) map[int]openapi.Response {
	r := map[int]openapi.Response{
		status:                  {Body: body},
		http.StatusUnauthorized: {Description: "No token, or not a valid one.", Body: problemBody},
		http.StatusForbidden: {Description: "The token's scope does not allow the operation (scope names what it needs), or a cross-origin request.",
			Body: scopeBody, ContentType: "application/problem+json"},
		http.StatusInternalServerError: {Body: problemBody},
		http.StatusServiceUnavailable:  {Description: "The bus, a VMA or a resource is unavailable now; try again.", Body: problemBody},
	}
	for _, s := range extra {
		r[s] = openapi.Response{Body: problemBody}
	}
	return r
}

// withBody are the statuses of an operation that decodes a JSON body.
var withBody = []int{http.StatusBadRequest, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}

func statuses(groups ...[]int) []int {
	var out []int
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

var (
	notFound = []int{http.StatusNotFound}
	conflict = []int{http.StatusConflict}
	// upstream: the operation waits on a VMA or vCenter.
	upstream = []int{http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests}
)

// omaOps lists the OMA API's operations.
func omaOps() []openapi.Op {
	op := func(method, path string, scope tokens.Scope, tag, summary string, req any, resp map[int]openapi.Response) openapi.Op {
		return openapi.Op{Method: method, Path: path, Tag: tag, Summary: summary, Security: "bearer", Scope: string(scope), Request: req, Responses: resp}
	}
	const (
		get, post, put, patch, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete
		read, operate, admin       = tokens.Read, tokens.Operate, tokens.Admin
	)
	body := statuses(withBody)
	bodyFound := statuses(withBody, notFound, conflict)
	found := statuses(notFound, conflict)
	ops := []openapi.Op{
		{Method: get, Path: "/api/v1/health", Tag: "health", Summary: "The OMA's status and version; with a valid token, also uptime, NATS, the connected VMAs and nbdkit restarts.",
			Responses: map[int]openapi.Response{http.StatusOK: {Body: healthAnswer{}}}},
		{Method: get, Path: "/api/v1/openapi.json", Tag: "health", Summary: "This document.",
			Responses: map[int]openapi.Response{http.StatusOK: {Body: map[string]any{}}}},
		op(get, "/metrics", read, "metrics", "The OMA's figures in Prometheus's text format (also on -metrics-addr, without a token).", nil,
			answers(http.StatusOK, "Prometheus text exposition format 0.0.4")),

		op(post, "/api/v1/replications", operate, "replications", "Create a job that copies a discovered VM's disks (initial or incremental); it waits for start.", replicationRequest{},
			answers(http.StatusCreated, jobView{}, statuses(withBody, notFound, conflict, []int{http.StatusTooManyRequests})...)),
		{Method: get, Path: "/api/v1/replications", Tag: "replications", Summary: "The jobs, newest first.", Security: "bearer", Scope: string(read),
			Query:     []openapi.Param{{Name: "state", Description: "Only jobs in this state.", Enum: events.JobStates()}, {Name: "vm", Description: "Only jobs of this VM id."}},
			Responses: answers(http.StatusOK, replicationList{}, http.StatusBadRequest)},
		op(get, "/api/v1/replications/{id}", read, "replications", "One job, with its disks, progress, queue place and current replica.", nil, answers(http.StatusOK, jobView{}, notFound...)),
		op(del, "/api/v1/replications/{id}", operate, "replications", "Cancel a job.", nil, answers(http.StatusOK, jobView{}, found...)),
		op(post, "/api/v1/replications/{id}/start", operate, "replications", "Start a job with vCenter credentials (or a registered vCenter's); it enters the OMA's queue.", startRequest{},
			answers(http.StatusAccepted, jobView{}, bodyFound...)),
		op(patch, "/api/v1/replications/{id}", operate, "replications", "Change a job's bandwidth limit, live.", rateRequest{}, answers(http.StatusOK, jobView{}, bodyFound...)),
		op(post, "/api/v1/replications/{id}/pause", operate, "replications", "Pause a running job at a checkpoint, its snapshot kept.", nil, answers(http.StatusAccepted, jobView{}, found...)),
		op(post, "/api/v1/replications/{id}/resume", operate, "replications", "Resume a paused job from its checkpoints.", nil, answers(http.StatusAccepted, jobView{}, found...)),
		op(get, "/api/v1/queue", read, "queue", "The OMA's queue: the jobs waiting, in order, with what each waits for, and the running jobs per VMA.", nil, answers(http.StatusOK, queueList{})),
		op(get, "/api/v1/limits", read, "queue", "The global bandwidth limit and its windows.", nil, answers(http.StatusOK, limits{})),
		op(patch, "/api/v1/limits", operate, "queue", "Change the global bandwidth limit or its windows, live.", rateRequest{}, answers(http.StatusOK, limits{}, body...)),

		op(post, "/api/v1/discover", operate, "inventory", "Discover a vCenter's VMs through a VMA; the inventory keeps them.", discoverRequest{},
			answers(http.StatusOK, discoverAnswer{}, statuses(withBody, notFound, upstream)...)),
		op(get, "/api/v1/vms", read, "inventory", "The inventory: every VM discovered, by VMA and vCenter.", nil, answers(http.StatusOK, vmList{})),

		op(get, "/api/v1/vmas", read, "vmas", "The VMAs, with their connection, capacity, load and authorized_keys line.", nil, answers(http.StatusOK, vmaList{})),
		op(post, "/api/v1/vmas", admin, "vmas", "Register a VMA: its NATS seed (shown once), ports and URLs.", vmaRequest{}, answers(http.StatusCreated, vmas.Credentials{}, statuses(withBody, conflict)...)),
		op(patch, "/api/v1/vmas/{id}", operate, "vmas", "Change a VMA's bandwidth limit or its windows, live.", rateRequest{}, answers(http.StatusOK, vmaLimits{}, bodyFound...)),

		op(post, "/api/v1/tokens", admin, "tokens", "Create an API token (its secret is shown once).", tokenRequest{}, answers(http.StatusCreated, tokenCreated{}, statuses(withBody, conflict)...)),
		op(get, "/api/v1/tokens", admin, "tokens", "The tokens: names, scopes, last use; never their secrets.", nil, answers(http.StatusOK, tokenList{})),
		op(del, "/api/v1/tokens/{name}", admin, "tokens", "Revoke a token.", nil, answers(http.StatusNoContent, nil, found...)),
		op(get, "/api/v1/token", read, "tokens", "The request's own token: its name and scope.", nil, answers(http.StatusOK, tokenSelf{})),

		op(post, "/api/v1/vcenters", admin, "vcenters", "Register a vCenter: credentials kept sealed at rest, the VMAs that may use it, its limits.", vcenterRequest{},
			answers(http.StatusCreated, vcenters.View{}, statuses(withBody, conflict, upstream)...)),
		op(get, "/api/v1/vcenters", read, "vcenters", "The registered vCenters (never their passwords).", nil, answers(http.StatusOK, vcenterList{})),
		op(get, "/api/v1/vcenters/{name}", read, "vcenters", "One registered vCenter.", nil, answers(http.StatusOK, vcenters.View{}, notFound...)),
		op(put, "/api/v1/vcenters/{name}", admin, "vcenters", "Change a registered vCenter's password, VMAs or limits.", vcenterUpdate{}, answers(http.StatusOK, vcenters.View{}, statuses(bodyFound, upstream)...)),
		op(del, "/api/v1/vcenters/{name}", admin, "vcenters", "Forget a registered vCenter no plan uses.", nil, answers(http.StatusNoContent, nil, found...)),

		op(post, "/api/v1/plans", operate, "plans", "Create a migration plan: VMs of a vCenter, waves, a sync schedule, limits, cutover settings.", planRequest{},
			answers(http.StatusCreated, plans.View{}, statuses(bodyFound)...)),
		op(get, "/api/v1/plans", read, "plans", "The plans.", nil, answers(http.StatusOK, planList{})),
		op(get, "/api/v1/plans/{name}", read, "plans", "One plan: its VMs' states, last and next syncs, predicted and measured cutover downtime.", nil, answers(http.StatusOK, plans.View{}, notFound...)),
		op(patch, "/api/v1/plans/{name}", operate, "plans", "Change a plan: VMs, waves, schedule, limits, priority, rate, cutover settings.", planPatch{}, answers(http.StatusOK, plans.View{}, bodyFound...)),
		op(del, "/api/v1/plans/{name}", operate, "plans", "Delete a plan (its replicas stay).", nil, answers(http.StatusNoContent, nil, found...)),
		op(get, "/api/v1/plans/{name}/preflight", operate, "plans", "Check a plan before it runs: vCenter, VMAs, CBT, snapshots, space, conversion.", nil,
			answers(http.StatusOK, plans.Report{}, statuses(notFound, upstream)...)),
		op(post, "/api/v1/plans/{name}/pause", operate, "plans", "Pause a plan's schedule.", nil, answers(http.StatusOK, plans.View{}, found...)),
		op(post, "/api/v1/plans/{name}/resume", operate, "plans", "Resume a plan's schedule.", nil, answers(http.StatusOK, plans.View{}, found...)),
		op(post, "/api/v1/plans/{name}/sync", operate, "plans", "Sync a plan's VMs now.", nil, answers(http.StatusOK, plans.View{}, found...)),
		op(post, "/api/v1/plans/{name}/vms/{vm}/retry", operate, "plans", "Retry a plan VM that failed.", nil, answers(http.StatusOK, plans.View{}, found...)),

		op(post, "/api/v1/vms/{id}/cutover", operate, "cutover", "Cut a VM over: power off, final sync, conversion, export, boot check.", cutoverRequest{},
			answers(http.StatusAccepted, cutoverView{}, bodyFound...)),
		{Method: get, Path: "/api/v1/vms/{id}/cutover", Tag: "cutover", Summary: "A VM's cutover, with its prediction.", Security: "bearer", Scope: string(read), Query: vmQuery,
			Responses: answers(http.StatusOK, cutoverView{}, notFound...)},
		{Method: get, Path: "/api/v1/vms/{id}/cutover/console", Tag: "cutover", Summary: "The boot check's serial console.", Security: "bearer", Scope: string(read), Query: vmQuery,
			Responses: answers(http.StatusOK, "the serial console, as text", notFound...)},
		{Method: get, Path: "/api/v1/vms/{id}/cutover/screenshot", Tag: "cutover", Summary: "The boot check's screen at its timeout (PNG).", Security: "bearer", Scope: string(read), Query: vmQuery,
			Responses: withPNG(answers(http.StatusOK, "", notFound...))},
		{Method: post, Path: "/api/v1/vms/{id}/cutover/rollback", Tag: "cutover", Summary: "Roll a VM's cutover back: the source powered on again, the target removed.", Security: "bearer", Scope: string(operate), Query: vmQuery,
			Responses: answers(http.StatusAccepted, cutoverView{}, found...)},
		{Method: post, Path: "/api/v1/vms/{id}/cutover/commit", Tag: "cutover", Summary: "Commit a VM's cutover: the target kept, the overlays removed.", Security: "bearer", Scope: string(operate), Query: vmQuery,
			Responses: answers(http.StatusAccepted, cutoverView{}, found...)},
		op(post, "/api/v1/plans/{name}/cutover", operate, "cutover", "Cut a plan's VMs over (all, or those named); none starts if one is refused.", cutoverRequest{},
			answers(http.StatusAccepted, cutoverList{}, bodyFound...)),
		op(post, "/api/v1/plans/{name}/cutover/rollback", operate, "cutover", "Roll back a plan's cutovers.", vmsRequest{}, answers(http.StatusAccepted, cutoverList{}, bodyFound...)),
		op(post, "/api/v1/plans/{name}/cutover/commit", operate, "cutover", "Commit a plan's cutovers.", vmsRequest{}, answers(http.StatusAccepted, cutoverList{}, bodyFound...)),
	}
	return ops
}

// vmQuery narrows a VM id found through several VMAs or vCenters.
var vmQuery = []openapi.Param{{Name: "vma_id", Description: "The VMA that found the VM, when several did."}, {Name: "vcenter", Description: "The vCenter of the VM, when several have its id."}}

// withPNG makes the 200 answer an image/png.
func withPNG(r map[int]openapi.Response) map[int]openapi.Response {
	r[http.StatusOK] = openapi.Response{Description: "The screen, as a PNG image.", Body: "PNG image", ContentType: "image/png"}
	return r
}
