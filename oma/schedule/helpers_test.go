package schedule

import (
	"testing"
	"time"
)

// mustParse parses spec with no minimum interval or fails tb.
func mustParse(tb testing.TB, spec Spec) *Schedule {
	tb.Helper()
	s, err := Parse(spec, 0)
	if err != nil {
		tb.Fatalf("Parse(%+v) = %v", spec, err)
	}
	return s
}

// at parses an RFC 3339 time or fails tb.
func at(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		tb.Fatalf("parse time %q: %v", s, err)
	}
	return t
}

// berlin is a window of the whole day that sets the zone to Europe/Berlin.
func berlin() *Window { return &Window{Start: "00:00", End: "00:00", TZ: "Europe/Berlin"} }

// checkNexts checks that Next, applied repeatedly from from, returns want.
func checkNexts(t *testing.T, s *Schedule, from string, want []string) {
	t.Helper()
	cur := at(t, from)
	for i, w := range want {
		got := s.Next(cur)
		if !got.Equal(at(t, w)) {
			t.Fatalf("%v: Next #%d (%s) = %s, want %s", s, i+1, cur.Format(time.RFC3339), got.Format(time.RFC3339), w)
		}
		cur = got
	}
}
