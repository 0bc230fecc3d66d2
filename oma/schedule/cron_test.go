package schedule

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestNextCron(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		from string
		want []string
	}{
		{"every minute", Spec{Cron: "* * * * *"}, "2026-01-01T10:17:03Z", []string{"2026-01-01T10:18:00Z", "2026-01-01T10:19:00Z"}},
		{"strictly after", Spec{Cron: "* * * * *"}, "2026-01-01T10:17:00Z", []string{"2026-01-01T10:18:00Z"}},
		{"step", Spec{Cron: "*/15 * * * *"}, "2026-01-01T00:00:00Z", []string{"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z", "2026-01-01T01:00:00Z"}},
		{"hour step", Spec{Cron: "0 */4 * * *"}, "2026-01-01T01:00:00Z", []string{"2026-01-01T04:00:00Z", "2026-01-01T08:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T16:00:00Z", "2026-01-01T20:00:00Z", "2026-01-02T00:00:00Z"}},
		{"range step", Spec{Cron: "5-10/2 * * * *"}, "2026-01-01T00:00:00Z", []string{"2026-01-01T00:05:00Z", "2026-01-01T00:07:00Z", "2026-01-01T00:09:00Z", "2026-01-01T01:05:00Z"}},
		{"range", Spec{Cron: "58-59 22-23 * * *"}, "2026-01-01T00:00:00Z", []string{"2026-01-01T22:58:00Z", "2026-01-01T22:59:00Z", "2026-01-01T23:58:00Z", "2026-01-01T23:59:00Z", "2026-01-02T22:58:00Z"}},
		{"list", Spec{Cron: "30 1,13 * * *"}, "2026-01-01T12:00:00Z", []string{"2026-01-01T13:30:00Z", "2026-01-02T01:30:00Z", "2026-01-02T13:30:00Z"}},
		{"list of ranges and steps", Spec{Cron: "0,20-21,*/50 0 * * *"}, "2026-01-01T00:00:00Z", []string{"2026-01-01T00:20:00Z", "2026-01-01T00:21:00Z", "2026-01-01T00:50:00Z", "2026-01-02T00:00:00Z"}},
		{"month names", Spec{Cron: "0 0 1 jan,JUL *"}, "2026-01-01T00:00:00Z", []string{"2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"}},
		{"month name range", Spec{Cron: "0 0 1 Nov-DEC *"}, "2026-01-01T00:00:00Z", []string{"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2027-11-01T00:00:00Z"}},
		{"day names", Spec{Cron: "0 9 * * MON-FRI"}, "2026-01-01T10:00:00Z", []string{"2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"}}, // Fri, then Mon
		{"dow 7 is Sunday", Spec{Cron: "0 0 * * 7"}, "2026-01-01T00:00:00Z", []string{"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
		{"dow 0 is Sunday", Spec{Cron: "0 0 * * 0"}, "2026-01-01T00:00:00Z", []string{"2026-01-04T00:00:00Z"}},
		{"dow range to 7", Spec{Cron: "0 0 * * 6-7"}, "2026-01-01T00:00:00Z", []string{"2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-10T00:00:00Z"}},
		{"dom or dow", Spec{Cron: "0 0 13 * FRI"}, "2026-01-01T00:00:00Z", []string{"2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"}},
		{"dom step and dow", Spec{Cron: "0 0 */10 * MON"}, "2026-01-01T00:00:00Z", []string{"2026-05-11T00:00:00Z", "2026-06-01T00:00:00Z", "2026-08-31T00:00:00Z"}}, // * first: both must match
		{"dom and dow step", Spec{Cron: "0 0 13 * */7"}, "2026-01-01T00:00:00Z", []string{"2026-09-13T00:00:00Z"}},                                                   // a Sunday the 13th
		{"month boundary", Spec{Cron: "0 0 1 * *"}, "2026-01-31T23:59:00Z", []string{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}},
		{"31st skips short months", Spec{Cron: "0 12 31 * *"}, "2026-01-31T12:00:00Z", []string{"2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z", "2026-07-31T12:00:00Z", "2026-08-31T12:00:00Z"}},
		{"year boundary", Spec{Cron: "59 23 31 12 *"}, "2026-12-31T23:59:00Z", []string{"2027-12-31T23:59:00Z"}},
		{"new year", Spec{Cron: "0 0 1 1 *"}, "2026-12-31T23:59:59Z", []string{"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"}},
		{"leap day", Spec{Cron: "0 0 29 2 *"}, "2026-03-01T00:00:00Z", []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"leap day over 2100", Spec{Cron: "0 0 29 2 *"}, "2096-03-01T00:00:00Z", []string{"2104-02-29T00:00:00Z"}},
		{"leap day on a Sunday", Spec{Cron: "0 0 29 2 */7"}, "2088-03-01T00:00:00Z", []string{"2128-02-29T00:00:00Z"}},
		{"keeps the location of t", Spec{Cron: "0 * * * *"}, "2026-01-01T10:30:00+05:00", []string{"2026-01-01T11:00:00+05:00"}},
		{"berlin wall clock", Spec{Cron: "0 3 * * *", Window: berlin()}, "2026-01-01T00:00:00Z", []string{"2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z"}},
		{"berlin summer", Spec{Cron: "0 3 * * *", Window: berlin()}, "2026-07-01T00:00:00Z", []string{"2026-07-01T01:00:00Z"}},
		{"berlin new year", Spec{Cron: "0 0 1 1 *", Window: berlin()}, "2026-06-01T00:00:00Z", []string{"2026-12-31T23:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkNexts(t, mustParse(t, tt.spec), tt.from, tt.want)
		})
	}
}

func TestNextCronWindow(t *testing.T) {
	t.Parallel()
	night := func(tz string) *Window { return &Window{Start: "22:00", End: "06:00", TZ: tz} }
	tests := []struct {
		name string
		spec Spec
		from string
		want []string
	}{
		{"jumps to the opening", Spec{Cron: "*/30 * * * *", Window: night("")}, "2026-01-01T12:00:00Z", []string{"2026-01-01T22:00:00Z", "2026-01-01T22:30:00Z"}},
		{"wraps midnight", Spec{Cron: "*/30 * * * *", Window: night("")}, "2026-01-01T23:30:00Z", []string{"2026-01-02T00:00:00Z", "2026-01-02T00:30:00Z"}},
		{"end is outside", Spec{Cron: "*/30 * * * *", Window: night("")}, "2026-01-02T05:30:00Z", []string{"2026-01-02T22:00:00Z"}},
		{"just before opening", Spec{Cron: "*/30 * * * *", Window: night("")}, "2026-01-01T21:59:59Z", []string{"2026-01-01T22:00:00Z"}},
		{"first match inside", Spec{Cron: "17 */4 * * *", Window: night("")}, "2026-01-01T12:00:00Z", []string{"2026-01-02T00:17:00Z", "2026-01-02T04:17:00Z", "2026-01-03T00:17:00Z"}},
		{"weekdays at night", Spec{Cron: "0 23 * * MON-FRI", Window: night("")}, "2026-01-02T23:00:00Z", []string{"2026-01-05T23:00:00Z"}},
		{"over the year", Spec{Cron: "0 * 31 12 *", Window: night("")}, "2026-12-31T21:00:00Z", []string{"2026-12-31T22:00:00Z", "2026-12-31T23:00:00Z", "2027-12-31T00:00:00Z"}},
		{"berlin", Spec{Cron: "0 * * * *", Window: night("Europe/Berlin")}, "2026-07-01T04:00:00Z", []string{"2026-07-01T20:00:00Z", "2026-07-01T21:00:00Z"}},
		{"berlin morning", Spec{Cron: "0 * * * *", Window: night("Europe/Berlin")}, "2026-01-01T03:30:00Z", []string{"2026-01-01T04:00:00Z", "2026-01-01T21:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkNexts(t, mustParse(t, tt.spec), tt.from, tt.want)
		})
	}
}

// TestNextDST covers Europe/Berlin's changes in 2026: on March 29 02:00
// CET becomes 03:00 CEST at 01:00 UTC; on October 25 03:00 CEST becomes
// 02:00 CET at 01:00 UTC.
func TestNextDST(t *testing.T) {
	t.Parallel()
	night := &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}
	tests := []struct {
		name string
		spec Spec
		from string
		want []string
	}{
		{"skipped time is due at the change", Spec{Cron: "30 2 * * *", Window: berlin()}, "2026-03-28T12:00:00Z", []string{"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
		{"skipped times are due once", Spec{Cron: "*/30 * * * *", Window: berlin()}, "2026-03-29T00:45:00Z", []string{"2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"}},
		{"hourly over spring forward", Spec{Cron: "0 * * * *", Window: berlin()}, "2026-03-28T23:30:00Z", []string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		{"spring forward night window", Spec{Cron: "0 * * * *", Window: night}, "2026-03-28T20:30:00Z", []string{"2026-03-28T21:00:00Z", "2026-03-28T22:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", "2026-03-29T03:00:00Z", "2026-03-29T20:00:00Z"}},
		{"repeated time is due once", Spec{Cron: "30 2 * * *", Window: berlin()}, "2026-10-24T12:00:00Z", []string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"hourly over fall back", Spec{Cron: "0 * * * *", Window: berlin()}, "2026-10-24T23:30:00Z", []string{"2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"}},
		{"from inside the repeated hour", Spec{Cron: "*/15 * * * *", Window: berlin()}, "2026-10-25T01:10:00Z", []string{"2026-10-25T02:00:00Z"}},
		{"fall back night window", Spec{Cron: "0 */2 * * *", Window: night}, "2026-10-24T19:30:00Z", []string{"2026-10-24T20:00:00Z", "2026-10-24T22:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T03:00:00Z", "2026-10-25T21:00:00Z"}},
		{"window starting in the gap", Spec{Cron: "*/15 * * * *", Window: &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}}, "2026-03-28T23:00:00Z", []string{"2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"}},
		{"window inside the gap", Spec{Cron: "*/15 * * * *", Window: &Window{Start: "02:15", End: "02:45", TZ: "Europe/Berlin"}}, "2026-03-28T23:00:00Z", []string{"2026-03-30T00:15:00Z"}},
		{"window in the repeated hour", Spec{Cron: "*/15 * * * *", Window: &Window{Start: "02:15", End: "02:45", TZ: "Europe/Berlin"}}, "2026-10-24T23:00:00Z", []string{"2026-10-25T00:15:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:15:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkNexts(t, mustParse(t, tt.spec), tt.from, tt.want)
		})
	}
}

// TestNextMatchesScan compares Next with a scan of every minute, on days
// without a zone change, for random expressions and times.
func TestNextMatchesScan(t *testing.T) {
	t.Parallel()
	exprs := []string{
		"* * * * *", "*/7 * * * *", "0 */3 * * *", "15,45 9-17 * * MON-FRI", "0 0 1,15 * *",
		"0 12 13 * 5", "30 4 * * 0,6", "0 0 */5 * *", "0 22 * 2-3 *", "*/20 1-4,23 * * 1-5",
		"0 0 1-7 * SUN", "5 5 5 5 *", "0 23 */2 * 1-3",
	}
	windows := []*Window{nil, {Start: "22:00", End: "06:00"}, {Start: "09:30", End: "10:15", TZ: "Europe/Berlin"}, berlin()}
	rng := rand.New(rand.NewPCG(1, 2))
	base := at(t, "2026-04-01T00:00:00Z") // April to September: no change in Berlin
	for _, expr := range exprs {
		for _, w := range windows {
			s, err := Parse(Spec{Cron: expr, Window: w}, 0)
			if err != nil {
				continue // an invalid expression, or one that never fires in w
			}
			for range 5 {
				from := base.Add(time.Duration(rng.Int64N(int64(60 * 24 * time.Hour))))
				want := scan(s, from, base.AddDate(0, 6, 0))
				if want.IsZero() {
					continue
				}
				if got := s.Next(from); !got.Equal(want) {
					t.Errorf("%v: Next(%s) = %s, want %s", s, from.Format(time.RFC3339), got.Format(time.RFC3339), want.Format(time.RFC3339))
				}
			}
		}
	}
}

// scan returns the first minute after from and before limit that s's cron
// expression names and its window holds, checking every minute; zero if
// there is none.
func scan(s *Schedule, from, limit time.Time) time.Time {
	for m := from.Truncate(time.Minute).Add(time.Minute); m.Before(limit); m = m.Add(time.Minute) {
		l := m.In(s.loc)
		c := s.cron
		dom, dow := c.dom&(1<<l.Day()) != 0, c.dow&(1<<l.Weekday()) != 0
		day := dom && dow
		if !c.domStar && !c.dowStar {
			day = dom || dow
		}
		if day && c.month&(1<<l.Month()) != 0 && c.hour&(1<<l.Hour()) != 0 && c.minute&(1<<l.Minute()) != 0 && s.Within(m) {
			return m
		}
	}
	return time.Time{}
}
