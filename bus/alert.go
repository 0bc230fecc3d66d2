package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events"
)

// StreamWatch configures WatchStreams. The zero value checks every 30s and
// alerts at 80% of a limit, cleared under 70%.
type StreamWatch struct {
	Every   time.Duration
	AlertAt float64 // a fraction of the limit
	ClearAt float64 // a fraction of the limit, below AlertAt
}

func (w StreamWatch) withDefaults() StreamWatch {
	if w.Every <= 0 {
		w.Every = 30 * time.Second
	}
	if w.AlertAt <= 0 {
		w.AlertAt = 0.8
	}
	if w.ClearAt <= 0 || w.ClearAt >= w.AlertAt {
		w.ClearAt = w.AlertAt - 0.1
	}
	return w
}

// WatchStreams checks how full every godwit stream is, at once and then
// every w.Every, until ctx ends. When a stream passes w.AlertAt of its byte
// or message limit, WatchStreams logs a warning and publishes a
// StreamAlert at level warning, once; when it is back under w.ClearAt, one
// at level cleared. A failed check is logged and tried again at the next
// tick. It returns nil when ctx ends.
func (c *Conn) WatchStreams(ctx context.Context, w StreamWatch) error {
	w = w.withDefaults()
	alerted := map[string]bool{}
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		for _, cfg := range StreamConfigs(StreamLimits{}) {
			if err := c.checkStream(ctx, cfg.Name, w, alerted); err != nil && ctx.Err() == nil {
				c.log.Warn("check stream limits", "stream", cfg.Name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Conn) checkStream(ctx context.Context, name string, w StreamWatch, alerted map[string]bool) error {
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	info := s.CachedInfo()
	a := &events.StreamAlert{Stream: name, Bytes: int64(info.State.Bytes), MaxBytes: info.Config.MaxBytes,
		Msgs: int64(info.State.Msgs), MaxMsgs: info.Config.MaxMsgs, DiscardNew: info.Config.Discard == jetstream.DiscardNew}
	frac := 0.0
	if a.MaxBytes > 0 {
		frac = max(frac, float64(a.Bytes)/float64(a.MaxBytes))
	}
	if a.MaxMsgs > 0 {
		frac = max(frac, float64(a.Msgs)/float64(a.MaxMsgs))
	}
	a.Percent = float64(int(frac*1000)) / 10
	switch {
	case !alerted[name] && frac >= w.AlertAt:
		a.Level = events.AlertWarning
		what := "drops its oldest messages"
		if a.DiscardNew {
			what = "refuses new messages"
		}
		c.log.Warn(fmt.Sprintf("stream %s is %.1f%% full: when full it %s", name, a.Percent, what),
			"stream", name, "bytes", a.Bytes, "max_bytes", a.MaxBytes, "msgs", a.Msgs, "max_msgs", a.MaxMsgs)
	case alerted[name] && frac < w.ClearAt:
		a.Level = events.AlertCleared
		c.log.Info(fmt.Sprintf("stream %s is back to %.1f%% full", name, a.Percent), "stream", name)
	default:
		return nil
	}
	if _, err := c.Publish(ctx, a); err != nil {
		return fmt.Errorf("publish stream alert: %w", err)
	}
	alerted[name] = a.Level == events.AlertWarning
	return nil
}
