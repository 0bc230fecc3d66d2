package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	t.Parallel()
	night := &Window{Start: "22:00", End: "06:00"}
	tests := []struct {
		name  string
		spec  Spec
		min   time.Duration
		field string
		msg   []string // substrings of the message
	}{
		{"zero", Spec{}, 0, "sync", []string{"needs an interval"}},
		{"window only", Spec{Window: night}, 0, "sync", []string{"needs an interval"}},
		{"both", Spec{Interval: "4h", Cron: "0 * * * *"}, 0, "sync", []string{"both"}},
		{"interval garbage", Spec{Interval: "four hours"}, 0, "sync.interval", []string{`"four hours" is not a duration`}},
		{"interval no unit", Spec{Interval: "4"}, 0, "sync.interval", []string{"not a duration"}},
		{"interval zero", Spec{Interval: "0s"}, 0, "sync.interval", []string{"not positive"}},
		{"interval negative", Spec{Interval: "-1h"}, 0, "sync.interval", []string{"not positive"}},
		{"interval below minimum", Spec{Interval: "1m"}, 5 * time.Minute, "sync.interval", []string{"minimum of 5m0s", "-min-sync-interval"}},
		{"cron below minimum", Spec{Cron: "*/5 * * * *"}, 15 * time.Minute, "sync.cron", []string{"fires 5m0s apart", "-min-sync-interval"}},
		{"cron below minimum once a week", Spec{Cron: "0,30 6 * * MON"}, time.Hour, "sync.cron", []string{"fires 30m0s apart", "Mon 06:30"}},
		{"cron four fields", Spec{Cron: "0 * * *"}, 0, "sync.cron", []string{"4 fields", "want 5"}},
		{"cron six fields", Spec{Cron: "0 0 * * * *"}, 0, "sync.cron", []string{"6 fields"}},
		{"cron minute 60", Spec{Cron: "60 * * * *"}, 0, "sync.cron", []string{"minute field (1st of 5)", "60 is out of range 0-59"}},
		{"cron hour 24", Spec{Cron: "0 24 * * *"}, 0, "sync.cron", []string{"hour field (2nd of 5)", "24 is out of range 0-23"}},
		{"cron dom 0", Spec{Cron: "0 0 0 * *"}, 0, "sync.cron", []string{"day-of-month field (3rd of 5)", "0 is out of range 1-31"}},
		{"cron month 13", Spec{Cron: "0 0 1 13 *"}, 0, "sync.cron", []string{"month field (4th of 5)", "13 is out of range 1-12"}},
		{"cron month name", Spec{Cron: "0 0 1 JANUARY *"}, 0, "sync.cron", []string{"month field", "JAN-DEC"}},
		{"cron dow 8", Spec{Cron: "0 0 * * 8"}, 0, "sync.cron", []string{"day-of-week field (5th of 5)", "8 is out of range 0-7"}},
		{"cron dow name", Spec{Cron: "0 0 * * MONDAY"}, 0, "sync.cron", []string{"day-of-week field", "SUN-SAT"}},
		{"cron backwards", Spec{Cron: "0 22-2 * * *"}, 0, "sync.cron", []string{"hour field", "runs backwards"}},
		{"cron step zero", Spec{Cron: "*/0 * * * *"}, 0, "sync.cron", []string{"minute field", "not a positive whole number"}},
		{"cron step text", Spec{Cron: "*/x * * * *"}, 0, "sync.cron", []string{"step \"x\""}},
		{"cron step on value", Spec{Cron: "5/15 * * * *"}, 0, "sync.cron", []string{"needs * or a range"}},
		{"cron empty item", Spec{Cron: "1,,2 * * * *"}, 0, "sync.cron", []string{"empty list item"}},
		{"cron letters", Spec{Cron: "x * * * *"}, 0, "sync.cron", []string{`"x" is not a number from 0 to 59`}},
		{"cron never 30 Feb", Spec{Cron: "0 0 30 2 *"}, 0, "sync.cron", []string{"never fires"}},
		{"cron never 31 Apr Jun", Spec{Cron: "0 0 31 APR,jun */2"}, 0, "sync.cron", []string{"never fires"}},
		{"cron never in window", Spec{Cron: "0 12 * * *", Window: night}, 0, "sync.cron", []string{"never fires inside the window 22:00-06:00 UTC"}},
		{"window start missing", Spec{Interval: "4h", Window: &Window{End: "06:00"}}, 0, "sync.window.start", []string{"missing"}},
		{"window start garbage", Spec{Interval: "4h", Window: &Window{Start: "10pm", End: "06:00"}}, 0, "sync.window.start", []string{`"10pm" is not a time`}},
		{"window start 24:00", Spec{Interval: "4h", Window: &Window{Start: "24:00", End: "06:00"}}, 0, "sync.window.start", []string{"out of range"}},
		{"window end minutes", Spec{Interval: "4h", Window: &Window{Start: "22:00", End: "06:60"}}, 0, "sync.window.end", []string{"out of range"}},
		{"window end seconds", Spec{Interval: "4h", Window: &Window{Start: "22:00", End: "06:00:00"}}, 0, "sync.window.end", []string{"not a time"}},
		{"window tz unknown", Spec{Interval: "4h", Window: &Window{Start: "22:00", End: "06:00", TZ: "Europe/Gotham"}}, 0, "sync.window.tz", []string{`unknown time zone "Europe/Gotham"`}},
		{"window tz local", Spec{Interval: "4h", Window: &Window{Start: "22:00", End: "06:00", TZ: "Local"}}, 0, "sync.window.tz", []string{"IANA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse(tt.spec, tt.min)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%+v) = %v, %v, want a *FieldError", tt.spec, s, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Parse(%+v) field = %q, want %q (%v)", tt.spec, fe.Field, tt.field, err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(fe.Msg, m) {
					t.Errorf("Parse(%+v) message = %q, want it to contain %q", tt.spec, fe.Msg, m)
				}
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Parse(%+v).Error() = %q, want it to start with %q", tt.spec, err, tt.field+": ")
			}
			if verr := tt.spec.Validate(tt.min); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate(%+v) = %v, want %v", tt.spec, verr, err)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		min  time.Duration
	}{
		{"interval at minimum", Spec{Interval: "5m"}, 5 * time.Minute},
		{"interval no minimum", Spec{Interval: "5s"}, 0},
		{"interval compound", Spec{Interval: "1h30m"}, time.Hour},
		{"cron every minute at the default minimum", Spec{Cron: "* * * * *"}, time.Minute},
		{"cron every four hours, minimum an hour", Spec{Cron: "0 */4 * * *"}, time.Hour},
		{"cron twice a day, 15m minimum", Spec{Cron: "0 6,18 * * *"}, 15 * time.Minute},
		{"cron extra spaces", Spec{Cron: " 0  */4 * * * "}, 0},
		{"cron leap day", Spec{Cron: "0 0 29 2 *"}, 0},
		{"cron 31st or a weekday", Spec{Cron: "0 0 31 2 MON"}, 0}, // either day field suffices
		{"window single digit hour", Spec{Interval: "1h", Window: &Window{Start: "6:00", End: "7:30"}}, 0},
		{"window all day", Spec{Cron: "0 3 * * *", Window: berlin()}, 0},
		{"window UTC", Spec{Interval: "1h", Window: &Window{Start: "22:00", End: "06:00", TZ: "UTC"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse(tt.spec, tt.min); err != nil {
				t.Errorf("Parse(%+v, %v) = %v, want nil", tt.spec, tt.min, err)
			}
		})
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Interval: "4h"}, "every 4h0m0s"},
		{Spec{Interval: "4h", Window: &Window{Start: "22:00", End: "6:00", TZ: "Europe/Berlin"}}, "every 4h0m0s inside 22:00-06:00 Europe/Berlin"},
		{Spec{Interval: "90m", Window: &Window{Start: "22:00", End: "06:00"}}, "every 1h30m0s inside 22:00-06:00 UTC"},
		{Spec{Cron: "0 */4 * * *"}, `cron "0 */4 * * *" in UTC`},
		{Spec{Cron: "0 2 * * *", Window: berlin()}, `cron "0 2 * * *" in Europe/Berlin`},
		{Spec{Cron: "0 2 * * *", Window: &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}}, `cron "0 2 * * *" in Europe/Berlin inside 22:00-06:00`},
	}
	for _, tt := range tests {
		if got := mustParse(t, tt.spec).String(); got != tt.want {
			t.Errorf("Parse(%+v).String() = %q, want %q", tt.spec, got, tt.want)
		}
	}
}

func TestWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window *Window
		t      string
		want   bool
	}{
		{"no window", nil, "2026-01-01T12:00:00Z", true},
		{"day inside", &Window{Start: "09:00", End: "17:00"}, "2026-01-01T12:00:00Z", true},
		{"day at start", &Window{Start: "09:00", End: "17:00"}, "2026-01-01T09:00:00Z", true},
		{"day before start", &Window{Start: "09:00", End: "17:00"}, "2026-01-01T08:59:59Z", false},
		{"day last second", &Window{Start: "09:00", End: "17:00"}, "2026-01-01T16:59:59Z", true},
		{"day at end", &Window{Start: "09:00", End: "17:00"}, "2026-01-01T17:00:00Z", false},
		{"night evening", &Window{Start: "22:00", End: "06:00"}, "2026-01-01T23:30:00Z", true},
		{"night at start", &Window{Start: "22:00", End: "06:00"}, "2026-01-01T22:00:00Z", true},
		{"night midnight", &Window{Start: "22:00", End: "06:00"}, "2026-01-02T00:00:00Z", true},
		{"night morning", &Window{Start: "22:00", End: "06:00"}, "2026-01-02T05:59:00Z", true},
		{"night at end", &Window{Start: "22:00", End: "06:00"}, "2026-01-02T06:00:00Z", false},
		{"night noon", &Window{Start: "22:00", End: "06:00"}, "2026-01-02T12:00:00Z", false},
		{"all day", &Window{Start: "07:00", End: "07:00"}, "2026-01-02T06:59:00Z", true},
		{"other zone of t", &Window{Start: "22:00", End: "06:00"}, "2026-01-01T23:30:00+05:00", false},                       // 18:30 UTC
		{"berlin winter inside", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-01-01T04:59:00Z", true},   // 05:59 CET
		{"berlin winter outside", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-01-01T05:00:00Z", false}, // 06:00 CET
		{"berlin summer start", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-07-01T20:00:00Z", true},    // 22:00 CEST
		{"berlin summer before", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-07-01T19:59:00Z", false},  // 21:59 CEST
		// 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
		{"spring forward night", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-03-29T03:59:00Z", true},    // 05:59 CEST
		{"spring forward morning", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-03-29T04:00:00Z", false}, // 06:00 CEST
		{"spring forward gap end", &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}, "2026-03-29T01:00:00Z", true},  // 03:00 CEST
		{"spring forward before gap", &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}, "2026-03-29T00:59:00Z", false},
		// 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
		{"fall back night", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-10-25T04:59:00Z", true},    // 05:59 CET
		{"fall back morning", &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}, "2026-10-25T05:00:00Z", false}, // 06:00 CET
		{"fall back first 02:40", &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}, "2026-10-25T00:40:00Z", true},
		{"fall back second 02:10", &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}, "2026-10-25T01:10:00Z", false}, // the wall clock went back
		{"fall back second 02:40", &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}, "2026-10-25T01:40:00Z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := mustParse(t, Spec{Interval: "1h", Window: tt.window})
			if got := s.Within(at(t, tt.t)); got != tt.want {
				t.Errorf("%v: Within(%s) = %v, want %v", s, tt.t, got, tt.want)
			}
		})
	}
}

func TestNextInterval(t *testing.T) {
	t.Parallel()
	night := func(tz string) *Window { return &Window{Start: "22:00", End: "06:00", TZ: tz} }
	tests := []struct {
		name string
		spec Spec
		from string
		want []string
	}{
		{"no window", Spec{Interval: "4h"}, "2026-01-01T10:17:03Z", []string{"2026-01-01T14:17:03Z", "2026-01-01T18:17:03Z"}},
		{"seconds", Spec{Interval: "5s"}, "2026-12-31T23:59:58Z", []string{"2027-01-01T00:00:03Z"}},
		{"keeps the location of t", Spec{Interval: "1h"}, "2026-01-01T10:00:00+05:00", []string{"2026-01-01T11:00:00+05:00"}},
		{"inside stays", Spec{Interval: "4h", Window: night("")}, "2026-01-01T20:00:00Z", []string{"2026-01-02T00:00:00Z", "2026-01-02T04:00:00Z"}},
		{"pushed to opening", Spec{Interval: "4h", Window: night("")}, "2026-01-02T04:00:00Z", []string{"2026-01-02T22:00:00Z", "2026-01-03T02:00:00Z", "2026-01-03T22:00:00Z"}},
		{"end is outside", Spec{Interval: "1h", Window: night("")}, "2026-01-02T05:00:00Z", []string{"2026-01-02T22:00:00Z"}},
		{"pushed keeps no seconds", Spec{Interval: "90m", Window: night("")}, "2026-01-02T05:17:42Z", []string{"2026-01-02T22:00:00Z"}},
		{"longer than a day", Spec{Interval: "30h", Window: night("")}, "2026-01-01T23:00:00Z", []string{"2026-01-03T05:00:00Z", "2026-01-04T22:00:00Z"}},
		{"day window", Spec{Interval: "4h", Window: &Window{Start: "09:00", End: "17:00"}}, "2026-01-01T15:00:00Z", []string{"2026-01-02T09:00:00Z", "2026-01-02T13:00:00Z"}},
		{"berlin summer", Spec{Interval: "4h", Window: night("Europe/Berlin")}, "2026-07-01T03:00:00Z", []string{"2026-07-01T20:00:00Z", "2026-07-02T00:00:00Z"}},
		{"berlin winter", Spec{Interval: "4h", Window: night("Europe/Berlin")}, "2026-01-01T03:00:00Z", []string{"2026-01-01T21:00:00Z"}},
		{"spring forward is elapsed time", Spec{Interval: "1h", Window: night("Europe/Berlin")}, "2026-03-29T00:30:00Z", []string{"2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z", "2026-03-29T03:30:00Z", "2026-03-29T20:00:00Z"}},
		{"fall back is elapsed time", Spec{Interval: "2h", Window: night("Europe/Berlin")}, "2026-10-24T23:00:00Z", []string{"2026-10-25T01:00:00Z", "2026-10-25T03:00:00Z", "2026-10-25T21:00:00Z"}},
		{"opening skipped by spring forward", Spec{Interval: "1h", Window: &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}}, "2026-03-28T23:30:00Z", []string{"2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T00:30:00Z"}},
		{"opening before the fall back", Spec{Interval: "1h", Window: &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}}, "2026-10-24T23:00:00Z", []string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"}},
		{"repeated hour before the start", Spec{Interval: "10m", Window: &Window{Start: "02:30", End: "05:00", TZ: "Europe/Berlin"}}, "2026-10-25T01:00:00Z", []string{"2026-10-25T01:30:00Z"}},
		{"all day window", Spec{Interval: "4h", Window: berlin()}, "2026-01-01T03:00:00Z", []string{"2026-01-01T07:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkNexts(t, mustParse(t, tt.spec), tt.from, tt.want)
		})
	}
}

func TestNextKeepsLocation(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no zone data: %v", err)
	}
	from := time.Date(2026, 1, 1, 12, 0, 0, 0, ny)
	for _, spec := range []Spec{
		{Interval: "4h", Window: &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}},
		{Cron: "0 3 * * *", Window: berlin()},
	} {
		if got := mustParse(t, spec).Next(from); got.Location() != ny {
			t.Errorf("Parse(%+v).Next(%v) = %v, want it in %v", spec, from, got, ny)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	s := mustParse(b, Spec{Cron: "*/20 1-4,23 * * MON-FRI", Window: &Window{Start: "22:00", End: "06:00", TZ: "Europe/Berlin"}})
	start := at(b, "2026-01-01T12:00:00Z")
	t := start
	for b.Loop() {
		t = s.Next(t)
		if t.Year() > 2030 {
			t = start
		}
	}
	if t.IsZero() || !s.Within(t) {
		b.Fatalf("%v: Next = %v, want a time inside the window", s, t)
	}
}
