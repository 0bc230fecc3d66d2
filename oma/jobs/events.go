package jobs

import "github.com/godwit/godwit/events"

// newEvent wraps a lifecycle payload in an envelope from the OMA.
func (m *Manager) newEvent(p events.Payload) (events.Event, error) {
	return events.New("/godwit/oma", p, m.cfg.Now())
}
