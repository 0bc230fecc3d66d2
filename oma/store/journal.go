package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// The journal is how a standby OMA keeps a copy of the state. While it is
// on (EnableJournal), every change to a replicated bucket is also written,
// in the same transaction, to the journal bucket, in order; a shipper
// reads it (JournalAfter), copies the changes into the cluster, and trims
// what is copied (TrimJournal). A standby applies the changes to its own
// store (ApplyReplica), with its journal off.

// bucketJournal holds the changes not yet copied: seq (big-endian uint64)
// -> encoded Change. It exists only while the journal is on.
var bucketJournal = []byte("journal")

// bucketReplica is a standby's own bookkeeping: how far it has applied
// the copy. It is never replicated.
var bucketReplica = []byte("replica")

// unreplicated are the buckets no standby needs: the journal and the
// replica's bookkeeping, and the pages of a discovery result still
// arriving (a page is as large as a NATS message may be; a discovery
// under way when the OMA is lost is asked again).
var unreplicated = [][]byte{bucketJournal, bucketReplica, bucketPages}

// replicated reports whether the bucket named name is copied to standbys.
func replicated(name []byte) bool {
	return !slices.ContainsFunc(unreplicated, func(b []byte) bool { return bytes.Equal(b, name) })
}

// Change is one change to a replicated bucket: a put, or a deletion when
// Deleted.
type Change struct {
	// Seq is its place in the journal.
	Seq     uint64
	Bucket  string
	Key     []byte
	Value   []byte
	Deleted bool
}

// encode writes c (without its seq) as the journal keeps it.
func (c Change) encode() []byte {
	b := []byte{0}
	if c.Deleted {
		b[0] = 1
	}
	b = binary.AppendUvarint(b, uint64(len(c.Bucket)))
	b = append(b, c.Bucket...)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	return append(b, c.Value...)
}

// decodeChange reads a change the journal keeps.
func decodeChange(seq uint64, b []byte) (Change, error) {
	bad := fmt.Errorf("journal entry %d: malformed", seq)
	if len(b) < 1 || b[0] > 1 {
		return Change{}, bad
	}
	c := Change{Seq: seq, Deleted: b[0] == 1}
	b = b[1:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		f := b[k : k+int(n)]
		b = b[k+int(n):]
		return f, true
	}
	bucket, ok1 := field()
	key, ok2 := field()
	if !ok1 || !ok2 {
		return Change{}, bad
	}
	c.Bucket, c.Key = string(bucket), bytes.Clone(key)
	if !c.Deleted {
		c.Value = bytes.Clone(b)
	}
	return c, nil
}

// setRaw puts value under key in bucket, and journals it.
func setRaw(tx *bbolt.Tx, bucket, key, value []byte) error {
	if err := tx.Bucket(bucket).Put(key, value); err != nil {
		return err
	}
	return journal(tx, Change{Bucket: string(bucket), Key: key, Value: value})
}

// delRaw deletes key from bucket, and journals it.
func delRaw(tx *bbolt.Tx, bucket, key []byte) error {
	if err := tx.Bucket(bucket).Delete(key); err != nil {
		return err
	}
	return journal(tx, Change{Bucket: string(bucket), Key: key, Deleted: true})
}

// delAt deletes the item c (a cursor of bucket) is at, whose key is key,
// and journals it.
func delAt(tx *bbolt.Tx, bucket []byte, c *bbolt.Cursor, key []byte) error {
	key = bytes.Clone(key) // the cursor's key is gone with the item
	if err := c.Delete(); err != nil {
		return err
	}
	return journal(tx, Change{Bucket: string(bucket), Key: key, Deleted: true})
}

// journal records c in the journal, when it is on and c's bucket is
// replicated.
func journal(tx *bbolt.Tx, c Change) error {
	j := tx.Bucket(bucketJournal)
	if j == nil || !replicated([]byte(c.Bucket)) {
		return nil
	}
	seq, err := j.NextSequence()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return j.Put(binary.BigEndian.AppendUint64(nil, seq), c.encode())
}

// EnableJournal turns the journal on. The first time, it journals the
// whole state, so that a copy built from the journal alone is complete.
func (s *Store) EnableJournal() error {
	return s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketJournal) != nil {
			return nil
		}
		if _, err := tx.CreateBucket(bucketJournal); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if !replicated(name) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					return nil // a nested bucket: none are replicated
				}
				return journal(tx, Change{Bucket: string(name), Key: k, Value: v})
			})
		})
	})
}

// DisableJournal turns the journal off and forgets what it held.
func (s *Store) DisableJournal() error {
	return s.update(func(tx *bbolt.Tx) error {
		err := tx.DeleteBucket(bucketJournal)
		if errors.Is(err, bbolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// JournalAfter returns at most n changes journaled after seq, in order.
func (s *Store) JournalAfter(seq uint64, n int) ([]Change, error) {
	var out []Change
	err := s.db.View(func(tx *bbolt.Tx) error {
		j := tx.Bucket(bucketJournal)
		if j == nil {
			return nil
		}
		c := j.Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, seq+1)); k != nil && len(out) < n; k, v = c.Next() {
			ch, err := decodeChange(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

// TrimJournal forgets the changes up to seq, copied already.
func (s *Store) TrimJournal(seq uint64) error {
	return s.db.Update(func(tx *bbolt.Tx) error { // no hook: the journal's own bookkeeping
		j := tx.Bucket(bucketJournal)
		if j == nil {
			return nil
		}
		c := j.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// replicaSeqKey keys, in bucketReplica, how far the copy is applied.
var replicaSeqKey = []byte("seq")

// ReplicaSeq returns how far a standby has applied the copy (the
// position ApplyReplica was last given), 0 when it has applied none.
func (s *Store) ReplicaSeq() (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketReplica); b != nil {
			if v := b.Get(replicaSeqKey); len(v) == 8 {
				seq = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return seq, err
}

// ApplyReplica applies changes copied from the active OMA, up to position
// pos of the copy, in one transaction: a standby's store follows the
// active one's. The journal must be off.
func (s *Store) ApplyReplica(changes []Change, pos uint64) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketJournal) != nil {
			return errors.New("apply a replica: the journal is on (this OMA is active)")
		}
		for _, c := range changes {
			if !replicated([]byte(c.Bucket)) {
				continue
			}
			b, err := tx.CreateBucketIfNotExists([]byte(c.Bucket))
			if err != nil {
				return fmt.Errorf("apply a replica: %w", err)
			}
			if c.Deleted {
				err = b.Delete(c.Key)
			} else {
				err = b.Put(c.Key, c.Value)
				// A bucket whose keys are its sequence (the outbox) goes on
				// after the copied keys when this OMA takes over.
				if err == nil && len(c.Key) == 8 && bytes.Equal([]byte(c.Bucket), bucketOutbox) {
					if k := binary.BigEndian.Uint64(c.Key); k > b.Sequence() {
						err = b.SetSequence(k)
					}
				}
			}
			if err != nil {
				return fmt.Errorf("apply a replica: %s: %w", c.Bucket, err)
			}
		}
		rb, err := tx.CreateBucketIfNotExists(bucketReplica)
		if err != nil {
			return err
		}
		return rb.Put(replicaSeqKey, binary.BigEndian.AppendUint64(nil, pos))
	})
}

// ResetReplica empties every replicated bucket and forgets how far the
// copy was applied, so that a standby builds its copy again from the
// start: what it held may be what it wrote as the active OMA, since
// overtaken.
func (s *Store) ResetReplica() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketJournal); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
			return err
		}
		var names [][]byte
		err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if replicated(name) || bytes.Equal(name, bucketReplica) {
				names = append(names, bytes.Clone(name))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := tx.DeleteBucket(n); err != nil {
				return err
			}
			if replicated(n) {
				if _, err := tx.CreateBucket(n); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
