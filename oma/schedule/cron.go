package schedule

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// cron is a parsed five-field cron expression; each field is a bit set of
// the values it matches (day-of-week 7 is folded onto 0, Sunday).
type cron struct {
	minute, hour, dom, month, dow uint64
	// domStar and dowStar record a field starting with *: only when
	// neither does is a day matching either field due (Vixie cron).
	domStar, dowStar bool
}

// cronField describes one of the five fields.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i; nil if the field has none
}

// cronFields are the five fields in order.
var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// ordinals name the five positions for error messages.
var ordinals = [5]string{"1st", "2nd", "3rd", "4th", "5th"}

// parseCron parses a five-field expression; errors say which field is
// wrong and why.
func parseCron(expr string) (*cron, error) {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return nil, fmt.Errorf("%q has %d fields; want 5: minute hour day-of-month month day-of-week, such as \"0 */4 * * *\"", expr, len(fields))
	}
	var sets [5]uint64
	for i, f := range fields {
		set, err := parseCronField(f, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("%s field (%s of 5) %q: %w", cronFields[i].name, ordinals[i], f, err)
		}
		sets[i] = set
	}
	c := &cron{
		minute: sets[0], hour: sets[1], dom: sets[2], month: sets[3],
		dow:     (sets[4] | sets[4]>>7) & 0x7f, // 7 is Sunday too
		domStar: strings.HasPrefix(fields[2], "*"),
		dowStar: strings.HasPrefix(fields[4], "*"),
	}
	if !c.feasible() {
		return nil, fmt.Errorf("%q never fires: no month it names has the day-of-month it names (February has 29 days at most, April, June, September and November 30)", expr)
	}
	return c, nil
}

// parseCronField parses one field: a comma-separated list of *, */n, a,
// a-b and a-b/n.
func parseCronField(s string, f cronField) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("empty list item; want values separated by single commas, such as 1,15")
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		lo, hi, step := f.min, f.max, 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("step %q in %q is not a positive whole number", stepText, item)
			}
			step = n
		}
		switch a, b, isRange := strings.Cut(rng, "-"); {
		case rng == "*":
			if f.name == "day-of-week" {
				hi = 6 // 7 repeats 0
			}
		case isRange:
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %q runs backwards; write the smaller value first, or a list such as 22,23,0,1", rng)
			}
		default:
			if hasStep {
				return 0, fmt.Errorf("step in %q needs * or a range before it, such as */%d or %s-%d/%d", item, step, rng, f.max, step)
			}
			v, err := f.value(rng)
			if err != nil {
				return 0, err
			}
			lo, hi = v, v
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

// value parses a number or, for months and days of the week, a name.
func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is neither a number from %d to %d nor a name %s-%s", s, f.min, f.max, f.names[0], f.names[len(f.names)-1])
		}
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, f.min, f.max)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// daysIn is the most days each month (1-12) has, leap years included.
var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// feasible reports whether some date matches. Only when both day fields
// must match can they exclude every date: a named day-of-month that no
// named month has. Every date falls on every day of the week in some year.
func (c *cron) feasible() bool {
	if !c.domStar && !c.dowStar {
		return true // any day of the week named is due
	}
	for m := 1; m <= 12; m++ {
		if c.month&(1<<m) != 0 && c.dom&(1<<(daysIn[m]+1)-1) != 0 {
			return true
		}
	}
	return false
}

// firesWithin reports whether some minute the cron names lies in w.
func (c *cron) firesWithin(w *window) bool {
	for m := range minutesPerDay {
		if c.hour&(1<<(m/60)) != 0 && c.minute&(1<<(m%60)) != 0 && w.containsMinute(m) {
			return true
		}
	}
	return false
}

// dayMatches reports whether the date of wall (a wall-clock reading) is due.
func (c *cron) dayMatches(wall time.Time) bool {
	dom := c.dom&(1<<wall.Day()) != 0
	dow := c.dow&(1<<wall.Weekday()) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// nextWall returns the first wall-clock minute at or after wall (a
// wall-clock reading kept in UTC, to the minute) that the cron names, and
// false if there is none before limit.
func (c *cron) nextWall(wall, limit time.Time) (time.Time, bool) {
	for wall.Before(limit) {
		y, mo, d := wall.Date()
		switch {
		case c.month&(1<<mo) == 0:
			wall = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
		case !c.dayMatches(wall):
			wall = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
		default:
			h, ok := nextBit(c.hour, wall.Hour())
			if !ok {
				wall = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
				continue
			}
			if h != wall.Hour() {
				wall = time.Date(y, mo, d, h, 0, 0, 0, time.UTC)
			}
			m, ok := nextBit(c.minute, wall.Minute())
			if !ok {
				wall = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
				continue
			}
			return time.Date(y, mo, d, h, m, 0, 0, time.UTC), true
		}
	}
	return time.Time{}, false
}

// nextBit returns the lowest bit of set at or above from.
func nextBit(set uint64, from int) (int, bool) {
	rest := set >> from << from
	if rest == 0 {
		return 0, false
	}
	return bits.TrailingZeros64(rest), true
}
