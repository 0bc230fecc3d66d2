package console

import (
	"maps"
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"godwit.>", "godwit.progress.vma-1.j1", true},
		{"godwit.>", "godwit", false},
		{">", "godwit", true},
		{"godwit.progress.*.j1", "godwit.progress.vma-1.j1", true},
		{"godwit.progress.*.j1", "godwit.progress.vma-1.j2", false},
		{"godwit.job.*.*.j1", "godwit.job.state.vma-1.j1", true},
		{"godwit.job.*.*.j1", "godwit.job.state.vma-1.j1.x", false},
		{"godwit.job", "godwit.job.state", false},
		{"godwit.job.state", "godwit.job", false},
	} {
		if got := match(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

func TestEventIDs(t *testing.T) {
	streams := []string{"JOBS", "PROGRESS", "PLANS"}
	pos := map[string]uint64{"PROGRESS": 123, "JOBS": 45}
	id := eventID(streams, pos)
	if id != "JOBS:45,PROGRESS:123" {
		t.Fatalf("eventID = %q", id)
	}
	if got := parseEventID(id); !maps.Equal(got, pos) {
		t.Errorf("parseEventID(%q) = %v, want %v", id, got, pos)
	}
	if got := parseEventID("JOBS:x,:4,PLANS:7,junk"); !maps.Equal(got, map[string]uint64{"PLANS": 7}) {
		t.Errorf("parseEventID of a bad id = %v, want only PLANS:7", got)
	}
}

// TestConflate: a job's progress events in one write shrink to its newest
// and its milestones; other events all stay, in their order.
func TestConflate(t *testing.T) {
	p := func(seq uint64, job string, milestone bool) message {
		return message{Stream: "PROGRESS", Seq: seq, Subject: "godwit.progress.vma-1." + job, Milestone: milestone}
	}
	status := message{Stream: "PROGRESS", Seq: 4, Subject: "godwit.status.vma-1.a"}
	in := []message{p(1, "a", true), p(2, "a", false), p(3, "b", false), status, p(5, "a", false), p(6, "b", false), p(7, "a", false)}
	var got []uint64
	for _, m := range conflate(in) {
		got = append(got, m.Seq)
	}
	if want := []uint64{1, 4, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("conflate kept %v, want %v", got, want)
	}
}
