package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
)

// maxFilters bounds the subject patterns of one event stream.
const maxFilters = 8

// stream serves a page's live updates as Server-Sent Events: the events of
// the subjects asked for (?subject=, NATS patterns), written at most every
// flushEvery, the last of each write with an id that says where every
// stream was ("JOBS:45,PROGRESS:123"). A browser that reconnects sends it
// back (Last-Event-ID) and gets what it missed first, nothing lost;
// without one it gets what comes from now on. A job's progress events
// within one write are conflated to the newest: each carries the job's
// whole state.
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
	pos := c.hub.last() // from now on, unless the browser says where it was
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		maps.Copy(pos, parseEventID(id))
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString("retry: 1000\n: godwit events\n\n")
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		msgs, gaps, notify := c.hub.since(pos, filters)
		for _, g := range gaps { // older than the rings: from the streams
			older, err := c.hub.read(r.Context(), g.stream, filters, g.start, g.end)
			if err != nil {
				c.log.Warn("console: replay an event stream", "stream", g.stream, "err", err)
				return
			}
			msgs = append(older, msgs...)
		}
		if len(msgs) > 0 {
			writeBatch(bw, conflate(msgs), pos, c.cfg.Streams)
		}
		if bw.Flush() != nil || rc.Flush() != nil {
			return
		}
		flushed := time.Now()
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-keepalive.C:
			bw.WriteString(": keepalive\n\n")
			continue
		case <-notify:
		}
		// Let what comes in the next moments join this write: a burst
		// costs a browser one write, not one per event.
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-time.After(flushEvery - time.Since(flushed)):
		}
	}
}

// conflate drops the progress events that a later progress event of the
// same job in msgs supersedes (it carries the job's whole state), but for
// the milestones a timeline shows; every other event stays, in its order.
func conflate(msgs []message) []message {
	newest := map[string]int{} // subject -> index of its last progress event
	for i, m := range msgs {
		if strings.HasPrefix(m.Subject, "godwit.progress.") {
			newest[m.Subject] = i
		}
	}
	if len(newest) == 0 {
		return msgs
	}
	out := msgs[:0:0]
	for i, m := range msgs {
		if j, ok := newest[m.Subject]; ok && j != i && !m.Milestone {
			continue
		}
		out = append(out, m)
	}
	return out
}

// writeBatch writes the events of msgs that pos has not seen, and moves
// pos past them; the last event written carries the id of the position
// after the whole batch (an event without an id keeps the one before, so
// a browser resumes after the last event it got whole).
func writeBatch(bw *bufio.Writer, msgs []message, pos map[string]uint64, streams []string) {
	var fresh []message
	for _, m := range msgs {
		if seq, ok := pos[m.Stream]; ok && m.Seq <= seq {
			continue
		}
		if m.SSE != nil {
			fresh = append(fresh, m)
		}
	}
	for _, m := range msgs {
		pos[m.Stream] = max(pos[m.Stream], m.Seq)
	}
	for i, m := range fresh {
		if i == len(fresh)-1 {
			bw.WriteString("id: ")
			bw.WriteString(eventID(streams, pos))
			bw.WriteByte('\n')
		}
		bw.Write(m.SSE)
		bw.WriteByte('\n')
	}
}

// flushEvery is how often a browser's event stream is written at most.
const flushEvery = 100 * time.Millisecond

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

// sse is m's data line for the browsers ("data: {...}\n"), nil for a
// message that is no event, and whether it is a progress milestone.
func (f *formatter) sse(m message) ([]byte, bool) {
	out, ok := f.format(m)
	if !ok {
		return nil, false
	}
	data, err := json.Marshal(out.liveEvent)
	if err != nil {
		return nil, false
	}
	return append(append([]byte("data: "), data...), '\n'), out.Milestone
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
