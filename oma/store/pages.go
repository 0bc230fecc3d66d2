package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// bucketPages holds the pages of paged discovery results until every page
// of their request has arrived.
var bucketPages = []byte("discover_pages")

// storedPage is one page of a discovery result as kept.
type storedPage struct {
	Result   events.DiscoverResult `json:"result"`
	StoredAt time.Time             `json:"stored_at"`
}

func pagesPrefix(vmaID, requestID string) []byte {
	return []byte(vmaID + "\x00" + requestID + "\x00")
}

// PutDiscoverPage keeps one page of a paged discovery result, received at
// t, replacing the same page of the same request.
func PutDiscoverPage(tx *bbolt.Tx, r events.DiscoverResult, t time.Time) error {
	data, err := json.Marshal(storedPage{Result: r, StoredAt: t.UTC()})
	if err != nil {
		return fmt.Errorf("encode discover page: %w", err)
	}
	key := binary.BigEndian.AppendUint32(pagesPrefix(r.VMAID, r.RequestID), uint32(r.Page))
	return setRaw(tx, bucketPages, key, data)
}

// DiscoverPages returns the kept pages of one request, in page order.
func DiscoverPages(tx *bbolt.Tx, vmaID, requestID string) ([]events.DiscoverResult, error) {
	var out []events.DiscoverResult
	prefix := pagesPrefix(vmaID, requestID)
	c := tx.Bucket(bucketPages).Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		var p storedPage
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, fmt.Errorf("decode discover page of %s: %w", requestID, err)
		}
		out = append(out, p.Result)
	}
	return out, nil
}

// DeleteDiscoverPages forgets the kept pages of one request.
func DeleteDiscoverPages(tx *bbolt.Tx, vmaID, requestID string) error {
	prefix := pagesPrefix(vmaID, requestID)
	c := tx.Bucket(bucketPages).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := delAt(tx, bucketPages, c, k); err != nil {
			return fmt.Errorf("delete discover pages of %s: %w", requestID, err)
		}
	}
	return nil
}

// PruneDiscoverPages forgets the pages received before t, of discoveries
// whose other pages never came, and returns how many it forgot.
func (s *Store) PruneDiscoverPages(t time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketPages)
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var p storedPage
			if err := json.Unmarshal(v, &p); err != nil || p.StoredAt.Before(t) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := delRaw(tx, bucketPages, k); err != nil {
				return fmt.Errorf("prune discover pages: %w", err)
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

func hasPrefix(k, prefix []byte) bool {
	return len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix)
}
