package schedule

import (
	"fmt"
	"time"
)

// Spec is a sync schedule as the API takes it (JSON). Exactly one of
// Interval and Cron is set; Window is optional.
type Spec struct {
	// Interval is a Go duration such as "4h", "90m" or "5s".
	Interval string `json:"interval,omitempty"`
	// Cron has five fields: minute hour day-of-month month day-of-week.
	Cron string `json:"cron,omitempty"`
	// Window limits syncs to a daily span of wall-clock time; nil allows
	// any time.
	Window *Window `json:"window,omitempty"`
}

// Schedule is a parsed Spec. It is immutable and safe for concurrent use.
type Schedule struct {
	interval time.Duration  // > 0 for an interval schedule
	cron     *cron          // non-nil for a cron schedule
	expr     string         // the cron expression as given
	window   *window        // nil: any time
	loc      *time.Location // the zone whose wall clock the cron expression reads
}

// horizon is how far Next looks ahead. A cron expression that Parse takes
// fires within it: the rarest, such as "0 0 29 2 */7" (February 29 when
// it is a Sunday), fire every few decades.
const horizon = 100 // years

// Parse checks s and returns its Schedule. An interval below minInterval
// is refused (minInterval <= 0 sets no minimum), and so is a cron
// expression that fires twice within less than minInterval in a week.
// Every error is a *FieldError naming the JSON field
// at fault.
func Parse(s Spec, minInterval time.Duration) (*Schedule, error) {
	sch := &Schedule{loc: time.UTC}
	if s.Window != nil {
		w, err := parseWindow(*s.Window)
		if err != nil {
			return nil, err
		}
		sch.window, sch.loc = w, w.loc
	}
	switch {
	case s.Interval == "" && s.Cron == "":
		return nil, fieldError("sync", `needs an interval (such as "4h") or a cron expression (such as "0 */4 * * *")`)
	case s.Interval != "" && s.Cron != "":
		return nil, fieldError("sync", "has both an interval and a cron expression; keep one of them")
	case s.Interval != "":
		d, err := parseInterval(s.Interval, minInterval)
		if err != nil {
			return nil, fieldError("sync.interval", err.Error())
		}
		sch.interval = d
	default:
		c, err := parseCron(s.Cron)
		if err != nil {
			return nil, fieldError("sync.cron", err.Error())
		}
		if sch.window != nil && !c.firesWithin(sch.window) {
			return nil, fieldError("sync.cron", fmt.Sprintf(
				"%q never fires inside the window %s: none of the hours and minutes it names falls in it; change the hours, or widen the window", s.Cron, sch.window))
		}
		sch.cron, sch.expr = c, s.Cron
		if gap, at := sch.shortestGap(minInterval); gap > 0 {
			return nil, fieldError("sync.cron", fmt.Sprintf(
				"%q fires %s apart (at %s), below the shortest interval allowed, %s (the OMA's -min-sync-interval sets it)",
				s.Cron, gap, at.Format("Mon 15:04 MST"), minInterval))
		}
	}
	return sch, nil
}

// shortestGap looks at a cron schedule's firings over a week (at most
// 2,000 of them) for two closer than minInterval: it returns the first
// such gap and when it ends, or 0 when there is none. A cron expression
// fires at most once a minute, so a minimum of a minute or less needs no
// look.
func (s *Schedule) shortestGap(minInterval time.Duration) (time.Duration, time.Time) {
	if minInterval <= time.Minute {
		return 0, time.Time{}
	}
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, s.loc) // a Monday
	prev := s.Next(start)
	for range 2000 {
		if prev.IsZero() || prev.Sub(start) > 8*24*time.Hour {
			break
		}
		next := s.Next(prev)
		if !next.IsZero() && next.Sub(prev) < minInterval {
			return next.Sub(prev), next
		}
		prev = next
	}
	return 0, time.Time{}
}

// Validate returns the error Parse(s, minInterval) would: nil or a
// *FieldError.
func (s Spec) Validate(minInterval time.Duration) error {
	_, err := Parse(s, minInterval)
	return err
}

// parseInterval parses a Go duration that is positive and at least minimum
// (if minimum > 0).
func parseInterval(s string, minimum time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; want a number and a unit (h, m or s), such as \"4h\" or \"90m\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not positive; want a duration such as \"4h\"", s)
	}
	if minimum > 0 && d < minimum {
		return 0, fmt.Errorf("%q is below the minimum of %v; use a longer interval (the OMA's -min-sync-interval flag sets the minimum)", s, minimum)
	}
	return d, nil
}

// Next returns the first due time strictly after t that lies inside the
// window, if there is one, in t's location.
//
// For an interval that is t plus the interval, moved to the window's next
// opening when it falls outside the window. For a cron expression it is
// the first minute after t that the expression names, read on the wall
// clock of the window's zone (UTC without one), and inside the window.
// Next returns the zero Time only if nothing is due in the next 100 years,
// which Parse rules out.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.cron == nil {
		due := t.Add(s.interval)
		if s.window != nil {
			due = s.window.next(due)
		}
		return due
	}
	wall := wallClock(t.In(s.loc)).Truncate(time.Minute).Add(time.Minute)
	limit := wall.AddDate(horizon, 0, 0)
	for {
		w, ok := s.cron.nextWall(wall, limit)
		if !ok {
			return time.Time{}
		}
		due := instant(w, s.loc)
		switch {
		case !due.After(t): // a repeated wall-clock time, first seen before t
			wall = w.Add(time.Minute)
		case s.window == nil || s.window.within(due):
			return due.In(t.Location())
		case s.window.containsMinute(w.Hour()*60 + w.Minute()):
			wall = w.Add(time.Minute) // skipped by a zone change to a time outside
		default:
			wall = nextStartWall(w, s.window.start)
		}
	}
}

// Within reports whether t is inside the window: at or after its start and
// before its end on the wall clock of its zone. Without a window it is
// always true.
func (s *Schedule) Within(t time.Time) bool {
	return s.window == nil || s.window.within(t)
}

// String describes the schedule, such as "every 4h0m0s inside 22:00-06:00
// Europe/Berlin", `cron "0 */4 * * *" in UTC` or `cron "0 2 * * *" in
// Europe/Berlin inside 22:00-06:00`.
func (s *Schedule) String() string {
	var what string
	if s.cron != nil {
		what = fmt.Sprintf("cron %q in %s", s.expr, s.loc)
		if s.window == nil || s.window.allDay() {
			return what
		}
		return what + " inside " + s.window.span()
	}
	what = "every " + s.interval.String()
	if s.window == nil || s.window.allDay() {
		return what
	}
	return what + " inside " + s.window.String()
}
