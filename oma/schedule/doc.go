// Package schedule parses the sync schedule of a migration plan and computes
// when its VMs are due:
//
//	sync: {interval: "4h", window: {start: "22:00", end: "06:00", tz: "Europe/Berlin"}}
//	sync: {cron: "0 */4 * * *"}
//
// Parse checks a Spec and returns a Schedule; every error it returns is a
// *FieldError naming the JSON field at fault ("sync", "sync.interval",
// "sync.cron", "sync.window.start", "sync.window.end", "sync.window.tz").
//
// # Intervals
//
// An interval has no wall-clock anchor: Next(t) is t plus the interval, and
// with a window, a time outside it moves to the window's next opening. The
// caller passes the time of the last sync (or of the last due time), so
// the schedule drifts by however long a sync is late.
//
// # Cron
//
// A cron expression has the five standard fields (minute hour
// day-of-month month day-of-week) with *, lists a,b, ranges a-b and steps
// */n and a-b/n, month names JAN-DEC and day names SUN-SAT (case does not
// matter), and 0 or 7 for Sunday. As in Vixie cron, when neither
// day-of-month nor day-of-week starts with *, a day matching either one is
// due; otherwise it must match both. It is evaluated on the wall clock of
// the window's time zone, or of UTC without a window or zone. Like an
// interval, it may not fire more often than the minimum Parse is given:
// two firings closer than that within a week are refused.
//
// # Windows
//
// A window is a daily span of wall-clock time, start inclusive and end
// exclusive, in its zone (UTC if none). An end before its start wraps
// midnight: 22:00-06:00 is the night. An end equal to its start is the
// whole day: 00:00-00:00 in Europe/Berlin lets a cron expression read
// Berlin's clock without limiting when it fires. A schedule with no window
// may sync at any time.
//
// # Daylight saving time
//
// Windows and cron expressions read the wall clock, so they follow the
// zone's changes. A cron time that a change skips (02:30 on a spring-forward
// day in Europe/Berlin) is due when the skipped span ends (03:00 CEST); a
// wall-clock time that a change repeats (02:30 on a fall-back day) is due
// once, at its first occurrence. Intervals are elapsed time and ignore the
// change, except where a window pushes them.
//
// # Restarts
//
// Next is a pure function of its argument, so the OMA stores the due time
// it computed. After a restart it runs a due time that has passed once,
// then asks Next(now) for the following one rather than catching up on
// every time it missed.
package schedule
