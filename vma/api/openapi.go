package api

import (
	"net/http"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/openapi"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/vma/jobs"
	"github.com/godwit/godwit/vma/store"
)

// OpenAPI returns the OpenAPI 3.1 document of the VMA's API, served at GET
// /api/v1/openapi.json (on the OMA, through the tunnel, at
// http://localhost:9081/api/v1/openapi.json). Its operations are listed
// here by hand, apart from the router: TestOpenAPI compares the two and
// checks real traffic against the document.
func OpenAPI(version string) ([]byte, error) {
	return openapi.JSON(openapi.Info{
		Title:   "godwit VMA API",
		Version: version,
		Description: "The VMA's REST API: discovery of a vCenter, replication jobs started here (they go through the OMA's queue), " +
			"their status and progress, and the cleanup of a job's snapshots. With -api-token-file, every operation but health " +
			"and this document takes `Authorization: Bearer <token>`. Errors are RFC 9457 problems whose `field` names the request " +
			"field at fault.",
		Problem: problem.Problem{},
		Security: map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer",
			"description": "The VMA's API token (-api-token-file); without one configured, none is needed."}},
		Enums: map[string][]string{
			"healthAnswer.status":           {"ok", "degraded"},
			"jobStatus.state":               vmaStates,
			"Progress.state":                vmaStates,
			"replicateRequest.on_cbt_reset": {events.OnCBTResetFail, events.OnCBTResetFull},
		},
	}, vmaOps())
}

// vmaStates are the VMA's job states.
var vmaStates = []string{store.StateAccepted, store.StateQueued, store.StateRunning, store.StatePaused, store.StateCompleted, store.StateFailed, store.StateCancelled}

// vmaOps lists the VMA API's operations.
func vmaOps() []openapi.Op {
	p := problem.Problem{}
	answers := func(status int, body any, extra ...int) map[int]openapi.Response {
		r := map[int]openapi.Response{
			status:                         {Body: body},
			http.StatusUnauthorized:        {Description: "No token, or not the VMA's.", Body: p},
			http.StatusForbidden:           {Description: "A cross-origin request, or a vCenter outside -vcenter-allow.", Body: p},
			http.StatusInternalServerError: {Body: p},
			http.StatusServiceUnavailable:  {Description: "The bus to the OMA is down; try again.", Body: p},
		}
		for _, s := range extra {
			r[s] = openapi.Response{Body: p}
		}
		return r
	}
	body := []int{http.StatusBadRequest, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}
	upstream := []int{http.StatusBadGateway, http.StatusGatewayTimeout}
	op := func(method, path, tag, summary string, req any, resp map[int]openapi.Response) openapi.Op {
		return openapi.Op{Method: method, Path: path, Tag: tag, Summary: summary, Security: "bearer", Request: req, Responses: resp}
	}
	return []openapi.Op{
		{Method: http.MethodGet, Path: "/api/v1/health", Tag: "health", Summary: "The VMA's status, id and version; with the token, also uptime, public key, bus and tunnel.",
			Responses: map[int]openapi.Response{http.StatusOK: {Body: healthAnswer{}}}},
		{Method: http.MethodGet, Path: "/api/v1/openapi.json", Tag: "health", Summary: "This document.",
			Responses: map[int]openapi.Response{http.StatusOK: {Body: map[string]any{}}}},
		op(http.MethodGet, "/metrics", "metrics", "The VMA's figures in Prometheus's text format (also on -metrics-addr, without a token).", nil,
			answers(http.StatusOK, "Prometheus text exposition format 0.0.4")),
		op(http.MethodPost, "/api/v1/discover", "discovery", "Discover a vCenter's VMs (the OMA's inventory gets them too).", discoverRequest{},
			answers(http.StatusOK, discoverAnswer{}, append(append([]int{http.StatusNotFound}, body...), upstream...)...)),
		op(http.MethodPost, "/api/v1/replicate", "jobs", "Copy VMs' disks into the OMA's exports: the job goes through the OMA's queue.", replicateRequest{},
			answers(http.StatusAccepted, replicateAnswer{}, append([]int{http.StatusConflict, http.StatusNotFound}, body...)...)),
		op(http.MethodGet, "/api/v1/status/{job_id}", "jobs", "A job's state as this VMA knows it.", nil, answers(http.StatusOK, jobStatus{}, http.StatusNotFound)),
		op(http.MethodGet, "/api/v1/progress/{job_id}", "jobs", "A job's progress: bytes, rates, ETA, per disk.", nil, answers(http.StatusOK, jobs.Progress{}, http.StatusNotFound)),
		op(http.MethodPost, "/api/v1/cleanup/{job_id}", "jobs", "Stop a job if it runs and remove its snapshots from the VM.", nil,
			answers(http.StatusOK, jobs.Cleaned{}, http.StatusNotFound, http.StatusConflict, http.StatusBadGateway)),
	}
}
