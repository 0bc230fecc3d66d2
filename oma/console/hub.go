package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ringSize is how many of each stream's last messages the hub keeps for
// browsers that reconnect.
const ringSize = 2048

// message is one message of a stream, as the browsers get it.
type message struct {
	Stream  string
	Seq     uint64
	Subject string
	Stored  time.Time
	// Data is the CloudEvent, as stored.
	Data []byte
	// SSE is the message's data line for the browsers ("data: {...}\n"),
	// rendered once for all of them; nil for a message that is no event.
	SSE []byte
	// Milestone marks a progress event a timeline keeps (a new phase,
	// another tenth): conflate never drops it.
	Milestone bool
}

// hub follows the streams with one ordered, ephemeral consumer each (so
// the browsers cost the server nothing more however many watch), and keeps
// each stream's last ringSize messages, formatted once. The browsers'
// event streams pull what is new from the rings at their own pace (at
// most every flushEvery), woken when something comes: a message costs the
// hub the same with a hundred browsers as with none. A browser that comes
// back with the last event id it saw gets what it missed from the ring,
// or from the stream itself when that is older than the ring.
type hub struct {
	js      jetstream.JetStream
	streams []string
	log     *slog.Logger
	// live formats the followed messages, in their order, under mu.
	live *formatter

	mu    sync.Mutex
	rings map[string][]message
	// base is each stream's last sequence before what its ring holds or
	// will hold: where a browser that came before any message starts.
	base map[string]uint64
	// notify is closed, and made anew, when a message comes.
	notify chan struct{}
}

func newHub(js jetstream.JetStream, streams []string, log *slog.Logger) *hub {
	return &hub{js: js, streams: streams, log: log, live: newFormatter(), rings: map[string][]message{}, base: map[string]uint64{}, notify: make(chan struct{})}
}

// run follows every stream until ctx ends.
func (h *hub) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range h.streams {
		wg.Go(func() { h.follow(ctx, s) })
	}
	wg.Wait()
}

// follow consumes stream from its last ringSize messages on, again after
// any failure, until ctx ends.
func (h *hub) follow(ctx context.Context, stream string) {
	for delay := time.Second; ctx.Err() == nil; delay = min(2*delay, 30*time.Second) {
		err := h.consume(ctx, stream)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("console: following a stream", "stream", stream, "err", err, "again_in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

func (h *hub) consume(ctx context.Context, stream string) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	h.mu.Lock()
	ring := h.rings[stream]
	h.mu.Unlock()
	if len(ring) > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: ring[len(ring)-1].Seq + 1}
	} else {
		st, err := h.js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		last := st.CachedInfo().State.LastSeq
		if last > 0 {
			cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(last, ringSize) - ringSize + 1}
		}
		h.mu.Lock()
		h.base[stream] = last
		h.mu.Unlock()
	}
	cons, err := h.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		h.publish(message{Stream: stream, Seq: md.Sequence.Stream, Subject: msg.Subject(), Stored: md.Timestamp, Data: msg.Data()})
	}
}

// publish keeps m, formatted, in its stream's ring, and wakes the
// browsers' streams.
func (h *hub) publish(m message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ring := h.rings[m.Stream]
	if n := len(ring); n > 0 && ring[n-1].Seq >= m.Seq {
		return // a consumer started again delivers what it had
	}
	m.SSE, m.Milestone = h.live.sse(m)
	if len(ring) == ringSize {
		copy(ring, ring[1:])
		ring = ring[:ringSize-1]
	}
	h.rings[m.Stream] = append(ring, m)
	close(h.notify)
	h.notify = make(chan struct{})
}

// gap is a range of a stream's sequences the ring no longer holds.
type gap struct {
	stream     string
	start, end uint64 // end excluded
}

// since returns the rings' messages matching filters after the positions
// pos (stream -> the last sequence seen; a stream not in pos: from now
// on, and pos gets its position), in each stream's order; the ranges
// that are older than the rings, to read from the streams; and a channel
// closed when something new comes.
func (h *hub) since(pos map[string]uint64, filters []string) ([]message, []gap, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []message
	var gaps []gap
	for stream, ring := range h.rings {
		if len(ring) == 0 {
			continue
		}
		seq, ok := pos[stream]
		if !ok {
			pos[stream] = ring[len(ring)-1].Seq
			continue
		}
		if ring[0].Seq > seq+1 {
			gaps = append(gaps, gap{stream, seq + 1, ring[0].Seq})
		}
		i, _ := slices.BinarySearchFunc(ring, seq+1, func(m message, s uint64) int { return cmp.Compare(m.Seq, s) })
		for _, m := range ring[i:] {
			if matchAny(filters, m.Subject) {
				out = append(out, m)
			}
		}
	}
	return out, gaps, h.notify
}

// maxCatchUp bounds what a browser replays from a stream.
const maxCatchUp = 10000

// read returns stream's messages matching filters from sequence start up
// to end (excluded), from the stream itself.
func (h *hub) read(ctx context.Context, stream string, filters []string, start, end uint64) ([]message, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	own, err := h.subjectsIn(ctx, stream, filters)
	if err != nil || len(own) == 0 {
		return nil, err
	}
	cons, err := h.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start, FilterSubjects: own})
	if err != nil {
		return nil, fmt.Errorf("replay %s from %d: %w", stream, start, err)
	}
	var out []message
	f := newFormatter()
	for len(out) < maxCatchUp {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("replay %s from %d: %w", stream, start, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream >= end {
				return out, nil
			}
			if matchAny(filters, msg.Subject()) {
				m := message{Stream: stream, Seq: md.Sequence.Stream, Subject: msg.Subject(), Stored: md.Timestamp, Data: msg.Data()}
				m.SSE, m.Milestone = f.sse(m)
				out = append(out, m)
			}
			if md.NumPending == 0 {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("replay %s from %d: %w", stream, start, err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// subjectsIn returns the filters that fall within stream's subjects: a
// consumer's filter subjects there. A filter that spans several streams
// (godwit.>) is narrowed to the stream's own subjects.
func (h *hub) subjectsIn(ctx context.Context, stream string, filters []string) ([]string, error) {
	st, err := h.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	var out []string
	for _, ss := range st.CachedInfo().Config.Subjects {
		for _, f := range filters {
			switch {
			case match(ss, literal(f)):
				out = append(out, f) // within the stream
			case match(f, literal(ss)):
				out = append(out, ss) // wider than the stream
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// literal is a subject that a pattern's wildcards stand in: each * and >
// as one token.
func literal(pattern string) string {
	return strings.NewReplacer("*", "x", ">", "x").Replace(pattern)
}

// history returns every message of the streams whose subject matches
// filters, oldest first per stream, up to what the hub has seen (and at
// most maxCatchUp per stream).
func (h *hub) history(ctx context.Context, filters []string) ([]message, error) {
	last := h.last()
	var out []message
	for _, stream := range h.streams {
		end, ok := last[stream]
		if !ok {
			continue
		}
		got, err := h.read(ctx, stream, filters, 1, end+1)
		if err != nil {
			return out, err
		}
		out = append(out, got...)
	}
	slices.SortStableFunc(out, func(a, b message) int { return a.Stored.Compare(b.Stored) })
	return out, nil
}

// recent returns the last n messages of the rings that match filters,
// oldest first.
func (h *hub) recent(filters []string, n int) []message {
	h.mu.Lock()
	var out []message
	for _, ring := range h.rings {
		for _, m := range ring {
			if matchAny(filters, m.Subject) {
				out = append(out, m)
			}
		}
	}
	h.mu.Unlock()
	slices.SortStableFunc(out, func(a, b message) int { return a.Stored.Compare(b.Stored) })
	return out[max(len(out)-n, 0):]
}

// last returns the last sequence of each stream the hub has seen, or
// that it starts after.
func (h *hub) last() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]uint64{}
	for stream, seq := range h.base {
		out[stream] = seq
	}
	for stream, ring := range h.rings {
		if len(ring) > 0 {
			out[stream] = ring[len(ring)-1].Seq
		}
	}
	return out
}

// matchAny reports whether subject matches one of the NATS subject
// patterns ('*' one token, '>' the rest).
func matchAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if match(p, subject) {
			return true
		}
	}
	return false
}

func match(pattern, subject string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		if p == ">" {
			return subject != ""
		}
		t, srest, smore := strings.Cut(subject, ".")
		if (p != "*" && p != t) || pmore != smore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, subject = prest, srest
	}
}

// eventID is the SSE id of a position: "STREAM:seq" for each stream, in
// the streams' order.
func eventID(streams []string, pos map[string]uint64) string {
	var parts []string
	for _, s := range streams {
		if seq, ok := pos[s]; ok {
			parts = append(parts, s+":"+strconv.FormatUint(seq, 10))
		}
	}
	return strings.Join(parts, ",")
}

// parseEventID reads a Last-Event-ID made by eventID; what it cannot read
// it leaves out.
func parseEventID(id string) map[string]uint64 {
	out := map[string]uint64{}
	for _, part := range strings.Split(id, ",") {
		stream, seq, ok := strings.Cut(strings.TrimSpace(part), ":")
		if n, err := strconv.ParseUint(seq, 10, 64); ok && err == nil && stream != "" {
			out[stream] = n
		}
	}
	return out
}
