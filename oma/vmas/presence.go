package vmas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// HeartbeatFresh is Config.HeartbeatTimeout's default: how recent a VMA's
// last heartbeat must be for the VMA to count as connected (the OMA's
// queue gives it jobs as long, with the same default).
const HeartbeatFresh = 30 * time.Second

// Connected returns the ids of the VMAs whose last heartbeat is fresh.
func (r *Registry) Connected() ([]string, error) {
	vmas, err := r.VMAs()
	if err != nil {
		return nil, err
	}
	ids := []string{}
	now := r.cfg.Now()
	for _, v := range vmas {
		if v.LastSeen != nil && now.Sub(*v.LastSeen) <= r.cfg.HeartbeatTimeout {
			ids = append(ids, v.ID)
		}
	}
	return ids, nil
}

// ApplyHeartbeat records a VMA's presence, version and public key. The
// VMA was seen when the OMA's clock says, whatever its own clock says.
func (r *Registry) ApplyHeartbeat(_ context.Context, ev events.Event, p events.Payload) error {
	h, ok := p.(*events.Heartbeat)
	if !ok {
		return fmt.Errorf("%w: %s on the presence consumer", bus.ErrPoison, ev.Type)
	}
	return r.applyToVMA(ev, h.VMAID, "heartbeat", func(v *store.VMA) {
		seen := r.cfg.Now().UTC()
		v.LastSeen, v.Version, v.PublicKey, v.Load = &seen, h.Version, h.PublicKey, h.Load
	})
}

// ApplyTunnelOutage adds an outage of a VMA's SSH connection to the VMA's
// record.
func (r *Registry) ApplyTunnelOutage(_ context.Context, ev events.Event, p events.Payload) error {
	o, ok := p.(*events.TunnelOutage)
	if !ok {
		return fmt.Errorf("%w: %s on the tunnel consumer", bus.ErrPoison, ev.Type)
	}
	return r.applyToVMA(ev, o.VMAID, "tunnel outage", func(v *store.VMA) {
		if v.Tunnel == nil {
			v.Tunnel = &store.TunnelOutages{}
		}
		v.Tunnel.Count++
		v.Tunnel.DownSeconds += o.DownSeconds
		if !o.RestoredAt.Before(v.Tunnel.Last.RestoredAt) {
			v.Tunnel.Last = *o
		}
		r.log.Warn("VMA's SSH connection was down", "vma", o.VMAID, "lost_at", o.LostAt, "down_s", o.DownSeconds, "cause", o.Cause)
	})
}

// applyToVMA applies ev once by changing the record of VMA id; an event
// (named what) of a VMA that is not registered is poison.
func (r *Registry) applyToVMA(ev events.Event, id, what string, change func(*store.VMA)) error {
	return r.store.ApplyOnce(ev, r.cfg.Now(), func(tx *bbolt.Tx) error {
		v, err := store.GetVMA(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s of unregistered VMA %s", bus.ErrPoison, what, id)
		}
		if err != nil {
			return err
		}
		change(&v)
		return store.PutVMA(tx, v)
	})
}
