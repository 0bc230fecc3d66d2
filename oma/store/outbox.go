package store

import (
	"bytes"
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
	return setRaw(tx, bucketOutbox, binary.BigEndian.AppendUint64(nil, seq), data)
}

// Pending is an event waiting in the outbox.
type Pending struct {
	key   []byte
	Event events.Event
}

// Outbox returns the events waiting to be published, oldest first.
func (s *Store) Outbox() ([]Pending, error) { return s.OutboxFirst(0) }

// OutboxFirst returns the n oldest events waiting to be published (all of
// them when n is 0), oldest first.
func (s *Store) OutboxFirst(n int) ([]Pending, error) { return s.OutboxAfter(Pending{}, n) }

// OutboxAfter returns the n oldest events waiting to be published after
// p (all of them when n is 0; from the first when p is the zero Pending),
// oldest first: those written after p, as p was published.
func (s *Store) OutboxAfter(p Pending, n int) ([]Pending, error) {
	var out []Pending
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if p.key != nil {
			if k, v = c.Seek(p.key); k != nil && bytes.Equal(k, p.key) {
				k, v = c.Next()
			}
		}
		for ; k != nil && (n == 0 || len(out) < n); k, v = c.Next() {
			var ev events.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("outbox: decode: %w", err)
			}
			out = append(out, Pending{key: append([]byte(nil), k...), Event: ev})
		}
		return nil
	})
	return out, err
}

// Sent removes published events from the outbox, in one transaction.
func (s *Store) Sent(ps ...Pending) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		for _, p := range ps {
			if err := delRaw(tx, bucketOutbox, p.key); err != nil {
				return err
			}
		}
		return nil
	})
}
