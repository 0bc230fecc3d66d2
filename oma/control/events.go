package control

import "github.com/godwit/godwit/events"

// newEvent wraps a lifecycle payload in an envelope from the OMA.
func (c *Control) newEvent(p events.Payload) (events.Event, error) {
	return events.New("/godwit/oma", p, c.cfg.Now())
}
