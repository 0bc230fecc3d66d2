package jobs

import (
	"fmt"

	"github.com/godwit/godwit/events"
)

// rank orders the states of the main line.
func rank(state string) int {
	switch state {
	case events.JobPending:
		return 0
	case events.JobQueued:
		return 1
	case events.JobSnapshotting:
		return 2
	case events.JobCopying:
		return 3
	case events.JobVerifying:
		return 4
	case events.JobFinalizing:
		return 5
	case events.JobCompleted:
		return 6
	}
	return -1
}

// Valid reports whether state is a job state.
func Valid(state string) bool {
	return rank(state) >= 0 || state == events.JobFailed || state == events.JobCancelled ||
		state == events.JobPaused || state == events.JobPausedExpired
}

// Final reports whether a job in state can never change again.
func Final(state string) bool {
	return state == events.JobCompleted || state == events.JobFailed || state == events.JobCancelled || state == events.JobPausedExpired
}

// Pausable reports whether a job in state can be paused: it is queued, or
// running on its VMA short of finalizing (removing its snapshot).
func Pausable(state string) bool {
	return rank(state) >= rank(events.JobQueued) && rank(state) < rank(events.JobFinalizing)
}

// Active reports whether a job in state holds its VM and its export.
func Active(state string) bool { return Valid(state) && !Final(state) }

// CanMove reports whether a job may move from one state to another: forward
// along the main line (skipping is allowed), or to failed or cancelled from
// any state that is not final. Staying put is not a move.
//
// A job moves to paused only when queued or running, out of paused only to
// queued (resumed), paused-expired, failed or cancelled, and to
// paused-expired only from paused: a report that was on its way when the
// job paused does not move it on.
func CanMove(from, to string) bool {
	if !Valid(from) || !Valid(to) || Final(from) || from == to {
		return false
	}
	switch {
	case to == events.JobFailed || to == events.JobCancelled:
		return true
	case to == events.JobPaused:
		return Pausable(from)
	case from == events.JobPaused:
		return to == events.JobQueued || to == events.JobPausedExpired
	case to == events.JobPausedExpired:
		return false
	}
	return rank(to) > rank(from)
}

// FromStatus maps a VMA's replication status to the job state it implies.
func FromStatus(status string) (string, error) {
	switch status {
	case events.StatusAccepted:
		return events.JobQueued, nil
	case events.StatusRunning:
		return events.JobSnapshotting, nil
	case events.StatusCompleted:
		return events.JobCompleted, nil
	case events.StatusFailed:
		return events.JobFailed, nil
	case events.StatusCancelled:
		return events.JobCancelled, nil
	case events.StatusPaused:
		return events.JobPaused, nil
	}
	return "", fmt.Errorf("unknown replication status %q", status)
}

// FromPhase maps a progress phase to the job state it implies.
func FromPhase(phase string) (string, error) {
	switch phase {
	case events.PhaseSnapshotting:
		return events.JobSnapshotting, nil
	case events.PhaseCopying:
		return events.JobCopying, nil
	case events.PhaseVerifying:
		return events.JobVerifying, nil
	case events.PhaseFinalizing:
		return events.JobFinalizing, nil
	}
	return "", fmt.Errorf("unknown progress phase %q", phase)
}
