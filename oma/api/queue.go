package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
)

// Bounds of a priority.
const (
	minPriority = -1000
	maxPriority = 1000
)

// checkPriority checks a priority field.
func checkPriority(field string, p int) error {
	if p < minPriority || p > maxPriority {
		return badRequest(field, "%s must be from %d to %d (higher goes first, 0 by default), not %d", field, minPriority, maxPriority, p)
	}
	return nil
}

// queueStatus is where a job stands in the OMA's queue.
type queueStatus struct {
	// Position is its place in the queue's order, from 1; 0 until the
	// queue's next pass.
	Position   int    `json:"position"`
	WaitingFor string `json:"waiting_for"`
}

// view is viewFor(r, j) with where j waits in the queue.
func (a *API) view(r *http.Request, j store.Job) jobView {
	v := viewFor(r, j)
	if w, ok := a.ctl.Queue().Status(j.ID); ok {
		v.Queue = &queueStatus{Position: w.Position, WaitingFor: w.WaitingFor}
	}
	return v
}

// queueList is the answer of GET /api/v1/queue.
type queueList struct {
	// Jobs are the waiting jobs in the queue's order.
	Jobs []queue.Waiting `json:"jobs"`
	// Running counts the dispatched jobs that have not ended, per VMA.
	Running map[string]int `json:"running"`
	At      time.Time      `json:"at"`
}

func (a *API) listQueue(w http.ResponseWriter, _ *http.Request) error {
	q := a.ctl.Queue()
	return writeJSON(w, http.StatusOK, queueList{Jobs: q.List(), Running: q.Running(), At: a.now().UTC()})
}

func (a *API) pauseReplication(w http.ResponseWriter, r *http.Request) error {
	j, err := a.ctl.Pause(r.Context(), mux.Vars(r)["id"], "")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, a.view(r, j))
}

func (a *API) resumeReplication(w http.ResponseWriter, r *http.Request) error {
	j, err := a.ctl.Resume(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, a.view(r, j))
}
