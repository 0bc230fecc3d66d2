package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
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

// rateRequest is the body of the PATCH requests that set a bandwidth
// limit: rate, bytes per second (0 removes it), and, but for a job's,
// rate_windows, limits for times of day that replace it then.
type rateRequest struct {
	Rate        *int64              `json:"rate"`
	RateWindows *[]store.RateWindow `json:"rate_windows"`
}

// decodeRate reads a rateRequest and checks it; windows says whether
// rate_windows may be given.
func decodeRate(w http.ResponseWriter, r *http.Request, windows bool) (store.RateChange, error) {
	var req rateRequest
	if err := decode(w, r, &req); err != nil {
		return store.RateChange{}, err
	}
	ch := store.RateChange{Rate: req.Rate, Windows: req.RateWindows}
	switch {
	case ch.Windows != nil && !windows:
		return ch, badRequest("rate_windows", "a job has no rate_windows: give its rate alone")
	case ch.Empty() && windows:
		return ch, badRequest("rate", "rate or rate_windows is required: bytes per second, 0 for no limit")
	case ch.Empty():
		return ch, badRequest("rate", "rate is required: bytes per second, 0 for no limit")
	}
	if ch.Rate != nil {
		if err := jobs.CheckRate("rate", *ch.Rate); err != nil {
			return ch, err
		}
	}
	if ch.Windows != nil {
		if err := jobs.CheckRateWindows("rate_windows", *ch.Windows); err != nil {
			return ch, err
		}
	}
	return ch, nil
}

func (a *API) patchReplication(w http.ResponseWriter, r *http.Request) error {
	ch, err := decodeRate(w, r, false)
	if err != nil {
		return err
	}
	j, err := a.ctl.SetRate(r.Context(), mux.Vars(r)["id"], *ch.Rate)
	if err != nil {
		return err
	}
	a.ctl.Queue().Kick()
	return writeJSON(w, http.StatusOK, a.view(r, j))
}

func (a *API) patchVMA(w http.ResponseWriter, r *http.Request) error {
	ch, err := decodeRate(w, r, true)
	if err != nil {
		return err
	}
	v, err := a.ctl.SetVMARate(mux.Vars(r)["id"], ch, func(tx *bbolt.Tx, v store.VMA) error {
		return a.ctl.Queue().LimitsChanged(tx, &events.QueueLimits{Object: events.LimitsVMA, Name: v.ID, Rate: &v.RateLimit, RateWindows: v.RateWindows})
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, vmaLimits{ID: v.ID, Rate: v.RateLimit, RateWindows: nonNil(v.RateWindows)})
}

// limits is the answer of GET and PATCH /api/v1/limits.
type limits struct {
	// Rate bounds the bytes per second of every job together; 0: none.
	Rate int64 `json:"rate"`
	// RateWindows replace it at their times of day.
	RateWindows []store.RateWindow `json:"rate_windows"`
}

func (a *API) getLimits(w http.ResponseWriter, _ *http.Request) error {
	var s store.Settings
	err := a.store.View(func(tx *bbolt.Tx) error {
		var err error
		s, err = store.GetSettings(tx)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, limits{Rate: s.RateLimit, RateWindows: nonNil(s.RateWindows)})
}

func (a *API) patchLimits(w http.ResponseWriter, r *http.Request) error {
	ch, err := decodeRate(w, r, true)
	if err != nil {
		return err
	}
	var s store.Settings
	err = a.store.Update(func(tx *bbolt.Tx) error {
		if s, err = store.GetSettings(tx); err != nil {
			return err
		}
		ch.Apply(&s.RateLimit, &s.RateWindows)
		if err := store.PutSettings(tx, s); err != nil {
			return err
		}
		return a.ctl.Queue().LimitsChanged(tx, &events.QueueLimits{Object: events.LimitsGlobal, Name: "all", Rate: &s.RateLimit, RateWindows: s.RateWindows})
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, limits{Rate: s.RateLimit, RateWindows: nonNil(s.RateWindows)})
}
