package console

import (
	"fmt"
	"html/template"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
)

// pageNames are the pages; each is templates/layout.html with its own file.
var pageNames = []string{"login", "error", "overview", "inventory", "plan", "job", "events", "reference"}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"bytes": watch.Bytes,
		"rate":  func(n int64) string { return watch.Bytes(n) + "/s" },
		"secs":  secsOf,
		"ago":   ago,
		"when":  when,
		"pct":   func(done, total int64) string { return fmt.Sprintf("%.1f %%", percent(done, total)) },
		"list":  func(s ...string) []string { return s },
		"final": func(state string) bool {
			return state == events.JobCompleted || state == events.JobFailed || state == events.JobCancelled || state == events.JobPausedExpired
		},
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: page %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// secsOf is a number of seconds (float64, *float64, int64 or *int64) as
// people read it.
func secsOf(v any) string {
	var s float64
	switch x := v.(type) {
	case float64:
		s = x
	case *float64:
		if x == nil {
			return "unknown"
		}
		s = *x
	case int64:
		s = float64(x)
	case *int64:
		if x == nil {
			return "unknown"
		}
		s = float64(*x)
	default:
		return fmt.Sprint(v)
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// timeOf is v (a time.Time or a *time.Time); ok is false for nil or zero.
func timeOf(v any) (time.Time, bool) {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	return t, !t.IsZero()
}

// ago is how long ago t (time.Time or *time.Time) was.
func ago(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "never"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + (-d).Round(time.Second).String()
	}
	return d.Round(time.Second).String() + " ago"
}

// when is a time to come (time.Time or *time.Time) as people read it.
func when(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "–"
	}
	d := time.Until(t)
	if d <= 0 {
		return "due now"
	}
	return "in " + d.Round(time.Second).String() + " (" + t.UTC().Format("15:04 UTC") + ")"
}
