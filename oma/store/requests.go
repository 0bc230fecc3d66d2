package store

import (
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// bucketRequests holds the discover requests the OMA published, so that
// only their results change the inventory.
var bucketRequests = []byte("discover_requests")

// DiscoverRequest is a discover request the OMA published for a VMA.
type DiscoverRequest struct {
	RequestID string    `json:"request_id"`
	VMAID     string    `json:"vma_id"`
	VCenter   string    `json:"vcenter"`
	At        time.Time `json:"at"`
}

func requestKey(vmaID, requestID string) string { return vmaID + "\x00" + requestID }

// PutDiscoverRequest records a discover request the OMA published.
func PutDiscoverRequest(tx *bbolt.Tx, r DiscoverRequest) error {
	return put(tx, bucketRequests, requestKey(r.VMAID, r.RequestID), r)
}

// GetDiscoverRequest returns the discover request requestID of a VMA, or
// an error wrapping ErrNotFound when the OMA published none.
func GetDiscoverRequest(tx *bbolt.Tx, vmaID, requestID string) (DiscoverRequest, error) {
	var r DiscoverRequest
	err := get(tx, bucketRequests, requestKey(vmaID, requestID), &r)
	return r, err
}

// PutDiscoverRequestOnce is PutDiscoverRequest in a transaction of its
// own; it changes nothing when the request is recorded already.
func (s *Store) PutDiscoverRequestOnce(r DiscoverRequest) error {
	return s.update(func(tx *bbolt.Tx) error {
		if _, err := GetDiscoverRequest(tx, r.VMAID, r.RequestID); !errors.Is(err, ErrNotFound) {
			return err
		}
		return PutDiscoverRequest(tx, r)
	})
}

// PruneDiscoverRequests forgets the requests made before t and returns how
// many it forgot: a result that comes later changes nothing.
func (s *Store) PruneDiscoverRequests(t time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		var old [][]byte
		err := each(tx, bucketRequests, func(r DiscoverRequest) error {
			if r.At.Before(t) {
				old = append(old, []byte(requestKey(r.VMAID, r.RequestID)))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := delRaw(tx, bucketRequests, k); err != nil {
				return fmt.Errorf("prune discover requests: %w", err)
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}
