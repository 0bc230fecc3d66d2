package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
)

// maxFilters bounds the subject patterns of one event stream.
const maxFilters = 8

// stream serves a page's live updates as Server-Sent Events: the events of
// the subjects asked for (?subject=, NATS patterns), each with an id that
// says where every stream was ("JOBS:45,PROGRESS:123"). A browser that
// reconnects sends the last one (Last-Event-ID) and gets what it missed
// first, nothing lost; without one it gets what comes from now on.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	filters := r.URL.Query()["subject"]
	if len(filters) == 0 || len(filters) > maxFilters {
		c.fail(w, r, sessionOf(r), http.StatusBadRequest, fmt.Sprintf("subject: give 1 to %d subject patterns", maxFilters))
		return
	}
	for _, f := range filters {
		if !validPattern(f) {
			c.fail(w, r, sessionOf(r), http.StatusBadRequest, "subject: "+f+" is not a subject pattern")
			return
		}
	}
	pos := c.hub.last()
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		for stream, seq := range parseEventID(id) {
			pos[stream] = seq
		}
	}
	sub, missed, err := c.hub.subscribe(r.Context(), filters, pos)
	if err != nil {
		c.log.Warn("console: an event stream", "err", err)
		c.fail(w, r, sessionOf(r), http.StatusServiceUnavailable, "the event streams are not available now")
		return
	}
	defer c.hub.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f := newFormatter()
	send := func(m message) error {
		if seq, ok := pos[m.Stream]; ok && m.Seq <= seq {
			return nil // replayed already, or from before the position
		}
		pos[m.Stream] = m.Seq
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "id: %s\n", eventID(c.cfg.Streams, pos))
		if out, ok := f.format(m); ok {
			data, err := json.Marshal(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(&buf, "data: %s\n", data)
		} else {
			buf.WriteString("data: {}\n")
		}
		buf.WriteString("\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return nil
	}
	// The position each event carries starts where the browser was.
	for stream, seq := range c.hub.last() {
		if _, ok := pos[stream]; !ok {
			pos[stream] = seq
		}
	}
	if _, err := fmt.Fprintf(w, "retry: 1000\n: %s\n\n", "godwit events"); err != nil {
		return
	}
	for _, m := range missed {
		if err := send(m); err != nil {
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-sub.gone:
			return // fell behind: the browser reconnects and replays
		case <-keepalive.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
		case m := <-sub.ch:
			if err := send(m); err != nil {
				return
			}
			// Send what else is waiting before flushing, in one write.
			for more := true; more; {
				select {
				case m := <-sub.ch:
					if err := send(m); err != nil {
						return
					}
				default:
					more = false
				}
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// liveEvent is what the browser gets of an event.
type liveEvent struct {
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	// When is the time as the pages show it.
	When string `json:"when"`
	// Line says what happened, for people (empty: nothing to say).
	Line string `json:"line,omitempty"`
	// Milestone marks a progress event worth a timeline line: a new
	// phase, or another tenth of the job done.
	Milestone bool `json:"milestone,omitempty"`
	// Fields are the figures of a job's page this event changes, by the
	// data-field they fill ("bytes_done", "disk.2000.percent"...).
	Fields map[string]string `json:"fields,omitempty"`
	// Job is the job the event is about, if any.
	Job string `json:"job,omitempty"`
}

// formatted is an event made readable: its line, and whether a timeline
// keeps it.
type formatted struct {
	liveEvent
	line line
	keep bool
}

// formatter turns events into lines, remembering per job how far its
// progress got (for milestones).
type formatter struct {
	buf     bytes.Buffer
	printer *watch.Printer
	// tenths is the last tenth of each job's progress a line said, and
	// phase its phase.
	tenths map[string]int
	phase  map[string]string
}

func newFormatter() *formatter {
	f := &formatter{tenths: map[string]int{}, phase: map[string]string{}}
	f.printer = watch.NewPrinter(&f.buf, time.UTC)
	return f
}

// format makes m readable; ok is false for a message that is no event.
func (f *formatter) format(m message) (formatted, bool) {
	var ev events.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Type == "" {
		return formatted{}, false
	}
	out := formatted{liveEvent: liveEvent{Stream: m.Stream, Seq: m.Seq, Subject: m.Subject, Type: ev.Type, Time: ev.Time, When: ev.Time.UTC().Format("15:04:05")}, keep: true}
	f.buf.Reset()
	_ = f.printer.Handle(ev)
	text := strings.TrimSpace(f.buf.String())
	// The printer starts its lines with the time and the job or plan:
	// the page shows those apart.
	if _, rest, ok := strings.Cut(text, " "); ok {
		text = rest
		if after, ok := strings.CutPrefix(text, "job "); ok { // the job's page names it already
			if _, msg, ok := strings.Cut(after, " "); ok {
				text = msg
			}
		}
	}
	pl, known := events.NewPayload(ev.Type)
	if known && ev.Decode(pl) == nil {
		switch p := pl.(type) {
		case *events.Progress:
			out.Job, out.Fields = p.JobID, progressFields(p)
			tenth := int(p.Percent / 10)
			if p.BytesTotal > 0 {
				tenth = int(10 * p.BytesDone / p.BytesTotal)
			}
			out.Milestone = p.Phase != f.phase[p.JobID] || tenth > f.tenths[p.JobID]
			f.phase[p.JobID], f.tenths[p.JobID] = p.Phase, max(tenth, f.tenths[p.JobID])
			text = fmt.Sprintf("%s: %s of %s (%.1f %%) at %s/s", p.Phase, watch.Bytes(p.BytesDone), watch.Bytes(p.BytesTotal), percent(p.BytesDone, p.BytesTotal), watch.Bytes(p.RateBytesPerSecond))
			out.keep = out.Milestone
		case *events.ReplicationStatus:
			out.Job = p.JobID
			text = fmt.Sprintf("the VMA reports %s: %s written", p.State, watch.Bytes(p.BytesTransferred))
			if p.Error != nil {
				text += fmt.Sprintf(" (%s: %s)", p.Error.Code, p.Error.Message)
			}
		case *events.JobStateChanged:
			out.Job = p.JobID
		case *events.Heartbeat:
			out.keep = false
			text = "heartbeat"
			if p.Load != nil {
				text = fmt.Sprintf("heartbeat: %d of %d jobs running, %s/s", p.Load.Running, p.Load.MaxJobs, watch.Bytes(p.Load.BytesPerSecond))
			}
		}
	}
	if text == "" {
		text = ev.Type
	}
	out.Line = text
	out.line = line{At: ev.Time, Subject: m.Subject, Type: ev.Type, Text: text}
	return out, true
}

// progressFields are the job page's figures a progress event fills.
func progressFields(p *events.Progress) map[string]string {
	out := map[string]string{
		"phase":      p.Phase,
		"bytes_done": watch.Bytes(p.BytesDone), "bytes_total": watch.Bytes(p.BytesTotal),
		"percent": fmt.Sprintf("%.1f %%", percent(p.BytesDone, p.BytesTotal)),
		"rate":    watch.Bytes(p.RateBytesPerSecond) + "/s",
		"eta":     eta(p.ETASeconds),
	}
	for _, d := range p.Disks {
		k := fmt.Sprintf("disk.%d.", d.Key)
		out[k+"bytes_done"] = watch.Bytes(d.BytesDone)
		out[k+"percent"] = fmt.Sprintf("%.1f %%", percent(d.BytesDone, d.BytesTotal))
		out[k+"rate"] = watch.Bytes(d.RateBytesPerSecond) + "/s"
	}
	return out
}

// percent is done of total, in percent (0 for an unknown total).
func percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return float64(int64(1000*float64(done)/float64(total))) / 10
}

// eta is an ETA in seconds as people read it; "unknown" for none.
func eta(s *int64) string {
	if s == nil {
		return "unknown"
	}
	return (time.Duration(*s) * time.Second).String()
}
