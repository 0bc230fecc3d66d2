package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily span of wall-clock time in which syncs may run, as the
// API takes it. Start and End are "HH:MM" (24h); an End before Start wraps
// midnight, and an End equal to Start is the whole day (which gives a cron
// expression a zone without limiting it). TZ is an IANA zone name; "" is
// UTC.
type Window struct {
	Start string `json:"start"`
	End   string `json:"end"`
	TZ    string `json:"tz,omitempty"`
}

// window is a parsed Window: start and end are minutes after midnight.
type window struct {
	start, end int
	loc        *time.Location
	tz         string
}

// minutesPerDay is the number of minutes in a day on the wall clock.
const minutesPerDay = 24 * 60

// parseWindow checks w; its errors are *FieldError.
func parseWindow(w Window) (*window, error) {
	start, err := parseClock(w.Start)
	if err != nil {
		return nil, fieldError("sync.window.start", err.Error())
	}
	end, err := parseClock(w.End)
	if err != nil {
		return nil, fieldError("sync.window.end", err.Error())
	}
	loc, tz, err := loadZone(w.TZ)
	if err != nil {
		return nil, fieldError("sync.window.tz", err.Error())
	}
	return &window{start: start, end: end, loc: loc, tz: tz}, nil
}

// parseClock parses "HH:MM" (or "H:MM") into minutes after midnight.
func parseClock(s string) (int, error) {
	const want = "want a 24-hour time HH:MM from 00:00 to 23:59, such as 22:00"
	if s == "" {
		return 0, fmt.Errorf("missing; %s", want)
	}
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || !digits(hh) || !digits(mm) {
		return 0, fmt.Errorf("%q is not a time; %s", s, want)
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is out of range; %s", s, want)
	}
	return h*60 + m, nil
}

// digits reports whether s is made of ASCII digits only.
func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// loadZone loads the IANA zone tz ("" is UTC) and returns its name.
func loadZone(tz string) (*time.Location, string, error) {
	if tz == "" || tz == "UTC" {
		return time.UTC, "UTC", nil
	}
	if tz == "Local" {
		return nil, "", fmt.Errorf(`"Local" depends on the OMA's host; name an IANA zone such as "Europe/Berlin"`)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, "", fmt.Errorf("unknown time zone %q; want an IANA name such as \"Europe/Berlin\" or \"America/New_York\" (%v)", tz, err)
	}
	return loc, tz, nil
}

// allDay reports whether the window is the whole day.
func (w *window) allDay() bool { return w.start == w.end }

// span returns the window's times as "22:00-06:00".
func (w *window) span() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.start/60, w.start%60, w.end/60, w.end%60)
}

// String returns the window as "22:00-06:00 Europe/Berlin".
func (w *window) String() string { return w.span() + " " + w.tz }

// containsMinute reports whether the wall-clock minute m (after midnight)
// is inside the window.
func (w *window) containsMinute(m int) bool {
	if w.allDay() {
		return true
	}
	if w.start < w.end {
		return w.start <= m && m < w.end
	}
	return m >= w.start || m < w.end
}

// within reports whether t's wall clock in the window's zone is inside it.
func (w *window) within(t time.Time) bool {
	if w.allDay() {
		return true
	}
	lt := t.In(w.loc)
	return w.containsMinute(lt.Hour()*60 + lt.Minute())
}

// maxZoneChanges bounds the zone changes next steps over; a window opens
// at least daily, and zones change a few times a year.
const maxZoneChanges = 8

// next returns t if it is inside the window, otherwise the window's next
// opening: the first instant after t whose wall clock reaches the start.
// On a day a change skips the start, that is the end of the skipped span.
func (w *window) next(t time.Time) time.Time {
	for range maxZoneChanges {
		if w.within(t) {
			return t
		}
		lt := t.In(w.loc)
		_, off := lt.Zone()
		_, zoneEnd := lt.ZoneBounds()
		open := nextStartWall(wallClock(lt), w.start)
		at := time.Unix(open.Unix()-int64(off), 0).In(t.Location())
		if zoneEnd.IsZero() || at.Before(zoneEnd) {
			return at
		}
		t = zoneEnd.In(t.Location()) // the offset changes before the opening
	}
	return t
}

// nextStartWall returns the first wall-clock time after wall whose time of
// day is start minutes after midnight; wall and the result are wall-clock
// readings kept in UTC.
func nextStartWall(wall time.Time, start int) time.Time {
	open := time.Date(wall.Year(), wall.Month(), wall.Day(), 0, start, 0, 0, time.UTC)
	if !open.After(wall) {
		open = open.AddDate(0, 0, 1)
	}
	return open
}

// wallClock returns t's wall-clock reading in its own location, as a time
// in UTC, so that arithmetic on it ignores zone changes.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// instant returns the first instant whose wall clock in loc reads wall (a
// wall-clock reading kept in UTC, to the minute), or, when a zone change
// skips wall, the instant at which the skipped span ends.
func instant(wall time.Time, loc *time.Location) time.Time {
	c := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), 0, 0, loc)
	if got := wallClock(c); !got.Equal(wall) { // skipped: c lies on one side of the change
		zoneStart, zoneEnd := c.ZoneBounds()
		if got.After(wall) {
			return zoneStart
		}
		return zoneEnd
	}
	zoneStart, _ := c.ZoneBounds()
	if zoneStart.IsZero() {
		return c
	}
	// Repeated: the zone before c's may read wall too, earlier.
	_, prevOff := zoneStart.Add(-time.Nanosecond).Zone()
	if e := time.Unix(wall.Unix()-int64(prevOff), 0).In(loc); e.Before(zoneStart) && wallClock(e).Equal(wall) {
		return e
	}
	return c
}

// Within reports whether t falls inside the daily window w, on its zone's
// wall clock. A w that does not parse is an error naming its field under
// prefix (such as "windows[0]").
func Within(w Window, t time.Time, prefix string) (bool, error) {
	pw, err := parseWindow(w)
	var fe *FieldError
	if errors.As(err, &fe) {
		fe.Field = prefix + strings.TrimPrefix(fe.Field, "sync.window")
		return false, fe
	}
	if err != nil {
		return false, err
	}
	return pw.within(t), nil
}
