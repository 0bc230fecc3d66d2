package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// ApplyOnce runs apply in one transaction with the event's id, unless the
// event was applied before; the id is recorded in the same transaction,
// applied at now. apply's error is returned and nothing is recorded.
func (s *Store) ApplyOnce(ev events.Event, now time.Time, apply func(tx *bbolt.Tx) error) error {
	return s.Update(func(tx *bbolt.Tx) error { return OnceIn(tx, ev, now, apply) })
}

// OnceIn runs apply within tx and records the event's id there, applied at
// now, unless the event was applied before, in an earlier transaction or
// earlier in tx.
func OnceIn(tx *bbolt.Tx, ev events.Event, now time.Time, apply func(tx *bbolt.Tx) error) error {
	if Applied(tx, ev.ID) {
		return nil
	}
	if err := apply(tx); err != nil {
		return err
	}
	if err := countApplied(tx, ev.Type); err != nil {
		return err
	}
	return MarkApplied(tx, ev.ID, now)
}

// countApplied counts one more event of type typ applied.
func countApplied(tx *bbolt.Tx, typ string) error {
	if typ == "" {
		typ = "unknown" // bbolt takes no empty key; events carry a type
	}
	b := tx.Bucket(bucketApplyCounts)
	var n uint64
	if v := b.Get([]byte(typ)); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	return setRaw(tx, bucketApplyCounts, []byte(typ), binary.BigEndian.AppendUint64(nil, n+1))
}

// ApplyCounts returns how many events of each type were applied, since
// the store was made: what OnceIn applied.
func ApplyCounts(tx *bbolt.Tx) map[string]uint64 {
	out := map[string]uint64{}
	_ = tx.Bucket(bucketApplyCounts).ForEach(func(k, v []byte) error {
		if len(v) == 8 {
			out[string(k)] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return out
}

// Applied reports whether the event id was applied before.
func Applied(tx *bbolt.Tx, eventID string) bool {
	return tx.Bucket(bucketApplied).Get([]byte(eventID)) != nil
}

// MarkApplied records that the event id was applied at t.
func MarkApplied(tx *bbolt.Tx, eventID string, t time.Time) error {
	return setRaw(tx, bucketApplied, []byte(eventID), []byte(t.UTC().Format(time.RFC3339Nano)))
}

// PruneApplied forgets the ids of events applied before t, and returns how
// many it forgot. Events older than the streams' max age cannot come back.
func (s *Store) PruneApplied(t time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketApplied).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			at, err := time.Parse(time.RFC3339Nano, string(v))
			if err == nil && at.Before(t) {
				if err := delAt(tx, bucketApplied, c, k); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// Pruned counts what Prune forgot.
type Pruned struct {
	EventIDs, DiscoverPages, DiscoverRequests int
}

// Prune forgets what is older than before: the ids of applied events, the
// pages of incomplete discoveries and the discover requests.
func (s *Store) Prune(before time.Time) (Pruned, error) {
	var p Pruned
	var err error
	if p.EventIDs, err = s.PruneApplied(before); err != nil {
		return p, fmt.Errorf("prune: %w", err)
	}
	if p.DiscoverPages, err = s.PruneDiscoverPages(before); err != nil {
		return p, fmt.Errorf("prune: %w", err)
	}
	if p.DiscoverRequests, err = s.PruneDiscoverRequests(before); err != nil {
		return p, fmt.Errorf("prune: %w", err)
	}
	return p, nil
}
