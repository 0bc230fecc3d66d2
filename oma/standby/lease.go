package standby

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
)

// LeaseBucket is the key-value bucket of the lease.
const LeaseBucket = "godwit-lease"

// leaseKey is the bucket's one key.
const leaseKey = "active"

// DefaultLeaseTTL is how long an active OMA's lease lasts without a
// renewal, unless told otherwise; it renews it every DefaultLeaseTTL/5.
const DefaultLeaseTTL = 5 * time.Second

// ErrLeaseLost is returned by Hold when the OMA no longer holds the lease:
// another took it, or it could not renew it in time.
var ErrLeaseLost = errors.New("lost the lease of the active OMA")

// Holder is what the lease says about the OMA holding it.
type Holder struct {
	// Name names the OMA (its server name, or host), for the logs and
	// for operators.
	Name string `json:"name"`
	// APIURL is where its API answers.
	APIURL string `json:"api_url,omitempty"`
	// Since is when it took the lease; Renewed when it last renewed it.
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
}

// LeaseConfig configures a Lease.
type LeaseConfig struct {
	// Holder names this OMA.
	Holder Holder
	// TTL is how long the lease lasts without a renewal; 0 means
	// DefaultLeaseTTL.
	TTL time.Duration
	// WaitFirst, when set, makes Acquire take a lease nobody has held only
	// after a TTL: a standby started with the active OMA leaves it the
	// lease.
	WaitFirst bool
	// Logger receives the lease's changes; nil discards.
	Logger *slog.Logger
}

// Lease is the lease of the active OMA, in LeaseBucket.
type Lease struct {
	kv  jetstream.KeyValue
	cfg LeaseConfig
	log *slog.Logger
	rev uint64 // the revision this OMA last wrote
}

// EnsureBuckets creates the lease's and the state's buckets on replicas
// servers, or updates them to that.
func EnsureBuckets(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range []jetstream.KeyValueConfig{
		{Bucket: LeaseBucket, Description: "godwit: the active OMA", History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)},
		{Bucket: StateBucket, Description: "godwit: the active OMA's state, for its standby", History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)},
	} {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
		if err := bus.NoDirectGets(ctx, js, cfg.Bucket); err != nil {
			return err
		}
	}
	return nil
}

// NewLease returns the lease in js's LeaseBucket (EnsureBuckets made it).
func NewLease(ctx context.Context, js jetstream.JetStream, cfg LeaseConfig) (*Lease, error) {
	kv, err := js.KeyValue(ctx, LeaseBucket)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lease{kv: kv, cfg: cfg, log: log}, nil
}

// TTL returns how long the lease lasts without a renewal.
func (l *Lease) TTL() time.Duration { return l.cfg.TTL }

// Current returns who holds the lease, if anyone.
func (l *Lease) Current(ctx context.Context) (Holder, bool, error) {
	e, err := l.kv.Get(ctx, leaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, err
	}
	var h Holder
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return Holder{}, false, fmt.Errorf("lease: %w", err)
	}
	return h, true, nil
}

// Acquire waits until this OMA holds the lease: at once when nobody holds
// it (after a TTL with WaitFirst), or once the holder has not renewed it
// for a TTL as this OMA's clock measures from the last renewal it saw. It
// returns ctx's error when ctx ends first.
func (l *Lease) Acquire(ctx context.Context) error {
	var seenRev uint64
	var seenAt time.Time // when seenRev was first seen
	firstFree := time.Time{}
	poll := min(l.cfg.TTL/10, 250*time.Millisecond)
	for {
		e, err := l.kv.Get(ctx, leaseKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if firstFree.IsZero() {
				firstFree = time.Now()
			}
			if !l.cfg.WaitFirst || time.Since(firstFree) >= l.cfg.TTL {
				if l.take(ctx, 0) {
					return nil
				}
			}
		case err != nil:
			l.log.Debug("read the lease", "err", err)
		default:
			if e.Revision() != seenRev {
				seenRev, seenAt = e.Revision(), time.Now()
				var h Holder
				if json.Unmarshal(e.Value(), &h) == nil {
					l.log.Debug("the lease is held", "holder", h.Name, "renewed", h.Renewed)
				}
			}
			if time.Since(seenAt) >= l.cfg.TTL && l.take(ctx, seenRev) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// TryAcquire takes the lease if nobody holds it, and reports whether it
// did.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	_, err := l.kv.Get(ctx, leaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return l.take(ctx, 0), nil
	case err != nil:
		return false, fmt.Errorf("read the lease: %w", err)
	}
	return false, nil
}

// take writes the lease over revision rev (0: creates it); it reports
// whether this OMA got it.
func (l *Lease) take(ctx context.Context, rev uint64) bool {
	now := time.Now().UTC()
	h := l.cfg.Holder
	h.Since, h.Renewed = now, now
	b, err := json.Marshal(h)
	if err != nil {
		return false
	}
	var got uint64
	if rev == 0 {
		got, err = l.kv.Create(ctx, leaseKey, b)
		if errors.Is(err, jetstream.ErrKeyExists) { // deleted, then created by another
			return false
		}
	} else {
		got, err = l.kv.Update(ctx, leaseKey, b, rev)
	}
	if err != nil {
		l.log.Debug("take the lease", "err", err)
		return false
	}
	l.rev, l.cfg.Holder.Since = got, now
	l.log.Info("took the lease of the active OMA", "holder", h.Name, "revision", got)
	return true
}

// Hold renews the lease every TTL/5 until ctx ends (it returns nil) or the
// lease is lost: another OMA took it, or no renewal went through for
// TTL*4/5, so that this OMA stops acting before another may start (it
// returns an error wrapping ErrLeaseLost). Acquire first.
func (l *Lease) Hold(ctx context.Context) error {
	every := l.cfg.TTL / 5
	fence := l.cfg.TTL * 4 / 5
	renewed := time.Now()
	for {
		wait := min(every, time.Until(renewed.Add(fence)))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if time.Since(renewed) >= fence {
			return fmt.Errorf("%w: no renewal went through for %s", ErrLeaseLost, time.Since(renewed).Round(time.Millisecond))
		}
		h := l.cfg.Holder
		h.Renewed = time.Now().UTC()
		b, err := json.Marshal(h)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		rev, err := l.kv.Update(rctx, leaseKey, b, l.rev)
		cancel()
		switch {
		case err == nil:
			l.rev, renewed = rev, time.Now()
		case isWrongRevision(err):
			return fmt.Errorf("%w: another OMA took it", ErrLeaseLost)
		default:
			l.log.Warn("renew the lease", "err", err, "since_renewed", time.Since(renewed).Round(time.Millisecond))
		}
	}
}

// isWrongRevision reports whether err says the key's revision is not the
// one given.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// Release gives the lease up, so that a standby takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("release the lease: %w", err)
	}
	l.log.Info("released the lease of the active OMA")
	return nil
}
