package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AccessBucket is the key-value bucket that carries the Access of a
// cluster to every node: the OMA writes it (ShareAccess) and every node
// applies it (FollowAccess), so that all of them let in the same VMAs,
// observers and admins. It holds public keys only.
const AccessBucket = "godwit-access"

// accessKey is the bucket's one key.
const accessKey = "access"

// sharedAccess is Access as the bucket holds it.
type sharedAccess struct {
	VMAs      map[string]string `json:"vmas"`
	Observers []string          `json:"observers"`
	Admins    []string          `json:"admins"`
}

// EnsureAccessBucket creates the access bucket on replicas servers, or
// updates it to them.
func (c *Conn) EnsureAccessBucket(ctx context.Context, replicas int) error {
	cfg := jetstream.KeyValueConfig{Bucket: AccessBucket, Description: "godwit: who may connect to every node",
		History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	if err := retryAPI(ctx, func() error { _, err := c.js.CreateOrUpdateKeyValue(ctx, cfg); return err }); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", AccessBucket, err)
	}
	return NoDirectGets(ctx, c.js, AccessBucket)
}

// NoDirectGets turns direct gets off on the stream of the key-value
// bucket named bucket, so that reads of it go through its leader: in
// nats-server 2.15 a direct get reads the server's options while a reload
// of its accounts (a VMA let in) writes them, a data race the race
// detector reports.
func NoDirectGets(ctx context.Context, js jetstream.JetStream, bucket string) error {
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.AllowDirect {
		return nil
	}
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("bucket %s: direct gets off: %w", bucket, err)
	}
	return nil
}

// ShareAccess writes a into the access bucket (EnsureAccessBucket made
// it), for every node that follows it.
func (c *Conn) ShareAccess(ctx context.Context, a Access) error {
	if _, err := a.config("", nil); err != nil { // refuse what no node could apply
		return fmt.Errorf("share access: %w", err)
	}
	b, err := json.Marshal(sharedAccess(a))
	if err != nil {
		return fmt.Errorf("share access: %w", err)
	}
	kv, err := c.js.KeyValue(ctx, AccessBucket)
	if err != nil {
		return fmt.Errorf("share access: %w", err)
	}
	if _, err := kv.Put(ctx, accessKey, b); err != nil {
		return fmt.Errorf("share access: %w", err)
	}
	return nil
}

// FollowAccess applies the access in AccessBucket to s, now and whenever
// it changes, until ctx ends; it waits for the bucket while nobody has
// made it yet. conn is a connection to the cluster with the OMA's rights
// (Server.Connect). It returns ctx's error.
func (s *Server) FollowAccess(ctx context.Context, conn *Conn) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := s.followAccess(ctx, conn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			s.log.Warn("follow the cluster's access", "bucket", AccessBucket, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// followAccess watches the bucket once, until ctx ends or the watch fails.
func (s *Server) followAccess(ctx context.Context, conn *Conn) error {
	kv, err := conn.js.KeyValue(ctx, AccessBucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, accessKey)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a deletion
			}
			var a sharedAccess
			if err := json.Unmarshal(e.Value(), &a); err != nil {
				s.log.Error("ignored access that does not decode", "bucket", AccessBucket, "revision", e.Revision(), "err", err)
				continue
			}
			if err := s.SetAccess(Access(a)); err != nil {
				s.log.Error("apply the cluster's access", "revision", e.Revision(), "err", err)
				continue
			}
			s.log.Info("applied the cluster's access", "revision", e.Revision(), "vmas", len(a.VMAs))
		}
	}
}
