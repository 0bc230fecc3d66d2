package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

var bucketOutbox = []byte("outbox")

// Enqueue adds ev to the outbox in tx, so that it is published if and only
// if tx commits (see Outbox and Sent).
func Enqueue(tx *bbolt.Tx, ev events.Event) error {
	b, err := tx.CreateBucketIfNotExists(bucketOutbox)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", ev.Type, err)
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), data)
}

// Pending is an event waiting in the outbox.
type Pending struct {
	key   []byte
	Event events.Event
}

// Outbox returns the events waiting to be published, oldest first.
func (s *Store) Outbox() ([]Pending, error) {
	var out []Pending
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var ev events.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("outbox: decode: %w", err)
			}
			out = append(out, Pending{key: append([]byte(nil), k...), Event: ev})
			return nil
		})
	})
	return out, err
}

// Sent removes a published event from the outbox.
func (s *Store) Sent(p Pending) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketOutbox); b != nil {
			return b.Delete(p.key)
		}
		return nil
	})
}
