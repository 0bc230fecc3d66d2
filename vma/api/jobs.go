package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/problem"
	"github.com/godwit/godwit/vma/store"
)

// allocationTimeout bounds the export request a replicate request makes.
const allocationTimeout = 15 * time.Second

// checkJob asks the OMA about the job before a replicate request is
// accepted (the export request the job itself makes later): the job must
// exist for this VMA, still be active, and replicate the one VM named.
func (a *API) checkJob(ctx context.Context, jobID string, paths []string) error {
	subj, err := subject.ExportRequest(a.cfg.Identity.ID, jobID)
	if err != nil {
		return problem.BadRequest("job_id", "job_id: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, allocationTimeout)
	defer cancel()
	var alloc events.ExportAllocation
	if err = a.conn.RequestServed(ctx, subj, struct{}{}, &alloc); err == nil && alloc.JobID != jobID {
		err = fmt.Errorf("the reply to %s is not job %s's allocation", subj, jobID)
	}
	var re *bus.RemoteError
	switch {
	case errors.As(err, &re) && re.Code == bus.CodeNotFound:
		return &problem.Error{Status: http.StatusNotFound, Field: "job_id", Detail: fmt.Sprintf("the OMA has no job %s for VMA %s: create it with POST /api/v1/replications on the OMA", jobID, a.cfg.Identity.ID)}
	case errors.As(err, &re) && re.Code == bus.CodeConflict:
		return &problem.Error{Status: http.StatusConflict, Field: "job_id", Detail: "the OMA refuses to start it: " + re.Message}
	case err != nil:
		return &problem.Error{Status: http.StatusServiceUnavailable, Detail: "the OMA did not answer about job " + jobID + ": " + err.Error()}
	}
	if len(paths) != 1 {
		return &problem.Error{Status: http.StatusConflict, Field: "vm_paths", Detail: fmt.Sprintf("job %s replicates one VM, %s; vm_paths names %d", jobID, alloc.VM.Path, len(paths))}
	}
	if paths[0] != alloc.VM.Path {
		return &problem.Error{Status: http.StatusConflict, Field: "vm_paths", Detail: fmt.Sprintf("job %s replicates %s, not %s", jobID, alloc.VM.Path, paths[0])}
	}
	return nil
}

// jobStatus is the answer of GET /api/v1/status/{job_id}.
type jobStatus struct {
	JobID   string   `json:"job_id"`
	State   string   `json:"state"`
	Phase   string   `json:"phase,omitempty"`
	Error   string   `json:"error,omitempty"`
	VMPaths []string `json:"vm_paths"`
	// Snapshot is the job's snapshot while it exists.
	Snapshot   string     `json:"snapshot,omitempty"`
	AcceptedAt time.Time  `json:"accepted_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// job returns the job the request's path names, or a 404.
func (a *API) job(r *http.Request) (store.Job, error) {
	id := mux.Vars(r)["job_id"]
	j, err := a.jobs.Job(id)
	if errors.Is(err, store.ErrNotFound) {
		return j, &problem.Error{Status: http.StatusNotFound, Field: "job_id", Detail: fmt.Sprintf("this VMA has no job %q", id)}
	}
	return j, err
}

func (a *API) status(w http.ResponseWriter, r *http.Request) error {
	j, err := a.job(r)
	if err != nil {
		return err
	}
	st := jobStatus{JobID: j.JobID, State: j.State, Phase: j.Phase, Error: j.Error, VMPaths: j.VMPaths, Snapshot: j.Snapshot,
		AcceptedAt: j.AcceptedAt, StartedAt: j.StartedAt, EndedAt: j.EndedAt, UpdatedAt: j.UpdatedAt}
	if st.State == "" {
		st.State = store.StateAccepted
	}
	if st.State != store.StateRunning {
		st.Phase = ""
	}
	return problem.WriteJSON(w, http.StatusOK, st)
}

func (a *API) progress(w http.ResponseWriter, r *http.Request) error {
	j, err := a.job(r)
	if err != nil {
		return err
	}
	p, err := a.jobs.Progress(j.JobID)
	if err != nil {
		return err
	}
	return problem.WriteJSON(w, http.StatusOK, p)
}

func (a *API) cleanup(w http.ResponseWriter, r *http.Request) error {
	j, err := a.job(r)
	if err != nil {
		return err
	}
	c, err := a.jobs.Cleanup(r.Context(), j.JobID)
	if err != nil {
		return &problem.Error{Status: http.StatusBadGateway, Field: "job_id", Detail: fmt.Sprintf("cleanup of job %s: %v", j.JobID, err)}
	}
	return problem.WriteJSON(w, http.StatusOK, c)
}
