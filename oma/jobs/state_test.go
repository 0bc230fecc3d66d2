package jobs_test

import (
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
)

func TestCanMove(t *testing.T) {
	t.Parallel()
	// want lists, for each state, the states it may move to.
	want := map[string][]string{
		events.JobPending:       {events.JobQueued, events.JobSnapshotting, events.JobCopying, events.JobVerifying, events.JobFinalizing, events.JobCompleted, events.JobFailed, events.JobCancelled},
		events.JobQueued:        {events.JobSnapshotting, events.JobCopying, events.JobVerifying, events.JobFinalizing, events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPaused},
		events.JobSnapshotting:  {events.JobCopying, events.JobVerifying, events.JobFinalizing, events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPaused},
		events.JobCopying:       {events.JobVerifying, events.JobFinalizing, events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPaused},
		events.JobVerifying:     {events.JobFinalizing, events.JobCompleted, events.JobFailed, events.JobCancelled, events.JobPaused},
		events.JobFinalizing:    {events.JobCompleted, events.JobFailed, events.JobCancelled},
		events.JobCompleted:     nil,
		events.JobFailed:        nil,
		events.JobCancelled:     nil,
		events.JobPaused:        {events.JobQueued, events.JobPausedExpired, events.JobFailed, events.JobCancelled},
		events.JobPausedExpired: nil,
	}
	for _, from := range events.JobStates() {
		allowed := map[string]bool{}
		for _, to := range want[from] {
			allowed[to] = true
		}
		for _, to := range append(events.JobStates(), "bogus") {
			if got := jobs.CanMove(from, to); got != allowed[to] {
				t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, allowed[to])
			}
		}
	}
}

func TestFinalAndActive(t *testing.T) {
	t.Parallel()
	for _, s := range events.JobStates() {
		final := s == events.JobCompleted || s == events.JobFailed || s == events.JobCancelled || s == events.JobPausedExpired
		if jobs.Final(s) != final || jobs.Active(s) == final {
			t.Errorf("%s: Final = %v, Active = %v", s, jobs.Final(s), jobs.Active(s))
		}
	}
	if jobs.Active("bogus") || jobs.Valid("bogus") {
		t.Error("an unknown state is active or valid")
	}
}

func TestMappings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		f        func(string) (string, error)
	}{
		{events.StatusAccepted, events.JobQueued, jobs.FromStatus},
		{events.StatusRunning, events.JobSnapshotting, jobs.FromStatus},
		{events.StatusCompleted, events.JobCompleted, jobs.FromStatus},
		{events.StatusFailed, events.JobFailed, jobs.FromStatus},
		{events.StatusCancelled, events.JobCancelled, jobs.FromStatus},
		{events.StatusPaused, events.JobPaused, jobs.FromStatus},
		{events.PhaseSnapshotting, events.JobSnapshotting, jobs.FromPhase},
		{events.PhaseCopying, events.JobCopying, jobs.FromPhase},
		{events.PhaseVerifying, events.JobVerifying, jobs.FromPhase},
		{events.PhaseFinalizing, events.JobFinalizing, jobs.FromPhase},
	}
	for _, tt := range tests {
		if got, err := tt.f(tt.in); err != nil || got != tt.want {
			t.Errorf("map(%s) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := jobs.FromStatus("dozing"); err == nil {
		t.Error("FromStatus(dozing) succeeded")
	}
	if _, err := jobs.FromPhase("dreaming"); err == nil {
		t.Error("FromPhase(dreaming) succeeded")
	}
}
