package appliance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/oma/standby"
	"github.com/godwit/godwit/oma/store"
)

// leadership is what an active OMA on a cluster runs besides its work:
// the lease it renews, and the shipper that copies its state for the
// standby.
type leadership struct {
	lease *standby.Lease
	lost  chan error // gets why the lease was lost
	stop  func()     // stops renewing and shipping, and releases the lease
}

// lead returns once this OMA is the active one: at once outside a cluster
// (nil), else when it holds the lease, its store the state the active OMA
// before it left. Until then it is a standby: its store follows the
// active one's. Once it leads, its changes are copied for the next
// standby, and the cluster lets in the VMAs its store registers.
func (o *OMA) lead(ctx context.Context, st *store.Store, b *natsBus, access bus.Access) (*leadership, error) {
	if !b.clustered {
		return nil, nil
	}
	cfg, log := o.cfg, o.log
	js := b.conn.JetStream()
	name := cfg.NATSServerName
	if name == "" {
		name, _ = os.Hostname()
	}
	// The cluster's JetStream API may not answer for a moment (a leader
	// elected, a node reloading its accounts): each call is tried again.
	var lease *standby.Lease
	err := retryCluster(ctx, func(ctx context.Context) (err error) {
		lease, err = standby.NewLease(ctx, js, standby.LeaseConfig{Holder: standby.Holder{Name: name, APIURL: cfg.APIURL},
			TTL: cfg.LeaseTTL, WaitFirst: cfg.Standby, Logger: log.With("part", "lease")})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := o.standBy(ctx, st, b, lease); err != nil {
		return nil, err
	}

	// Active: the streams, then journal, copy, let the VMAs in, renew.
	if err := o.ensureCluster(ctx, b.conn); err != nil {
		return nil, err
	}
	if err := st.EnableJournal(); err != nil {
		return nil, err
	}
	shipper := standby.NewShipper(st, js, standby.ShipperConfig{Logger: log.With("part", "shipper")})
	st.SetCommitHook(shipper.Wait)
	shipCtx, stopShipping := context.WithCancel(context.WithoutCancel(ctx))
	shipped := make(chan struct{})
	go func() { defer close(shipped); _ = shipper.Run(shipCtx) }()
	access.VMAs = map[string]string{}
	err = st.View(func(tx *bbolt.Tx) error {
		vmas, err := store.VMAs(tx)
		for _, v := range vmas {
			access.VMAs[v.ID] = v.NKey
		}
		return err
	})
	if err == nil {
		err = retryCluster(ctx, func(context.Context) error { return b.access.SetAccess(access) })
	}
	if err != nil {
		st.SetCommitHook(nil)
		stopShipping()
		<-shipped
		return nil, fmt.Errorf("share access with the cluster: %w", err)
	}
	l := &leadership{lease: lease, lost: make(chan error, 1)}
	holdCtx, stopHolding := context.WithCancel(context.WithoutCancel(ctx))
	held := make(chan struct{})
	go func() {
		defer close(held)
		if err := lease.Hold(holdCtx); err != nil {
			// Stop acting at once: nothing more reaches the cluster from
			// this OMA, whatever its parts are doing.
			log.Error("lost the lease: this OMA stops acting", "err", err)
			b.conn.Close()
			l.lost <- err
		}
	}()
	l.stop = func() {
		stopHolding()
		<-held
		st.SetCommitHook(nil)
		stopShipping()
		<-shipped
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lease.Release(rctx); err != nil && b.conn.NATS().IsConnected() {
			log.Warn("release the lease", "err", err)
		}
	}
	log.Info("this OMA is the active one", "name", name, "lease_ttl", lease.TTL())
	return l, nil
}

// standBy returns once this OMA holds the lease. A new cluster's first
// OMA (no lease, no state copied yet) takes it with its own store, unless
// started as a standby; any other follows the state copied by the active
// OMA, takes the lease once it lapses, and catches up with the copy.
func (o *OMA) standBy(ctx context.Context, st *store.Store, b *natsBus, lease *standby.Lease) error {
	log := o.log
	js := b.conn.JetStream()
	var holder standby.Holder
	var held bool
	var copied uint64 // items in the state bucket
	err := retryCluster(ctx, func(ctx context.Context) (err error) {
		if holder, held, err = lease.Current(ctx); err != nil {
			return fmt.Errorf("read the lease: %w", err)
		}
		kv, err := js.KeyValue(ctx, standby.StateBucket)
		if err != nil {
			return fmt.Errorf("state bucket: %w", err)
		}
		status, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("state bucket: %w", err)
		}
		copied = status.Values()
		return nil
	})
	if err != nil {
		return err
	}
	if !held && copied == 0 && !o.cfg.Standby {
		if took, err := lease.TryAcquire(ctx); err != nil || took {
			return err
		}
	}
	follower := standby.NewFollower(st, js, log.With("part", "follower"))
	fctx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- follower.Run(fctx) }()
	stop := func() error {
		stopFollowing()
		return <-followed
	}
	if held {
		log.Info("standby: following the active OMA", "active", holder.Name, "active_api", holder.APIURL, "lease_ttl", lease.TTL())
	} else {
		log.Info("standby: following the state the last active OMA left; taking the lease", "lease_ttl", lease.TTL())
	}
	if err := lease.Acquire(ctx); err != nil {
		return errors.Join(err, stop())
	}
	start := time.Now()
	err = follower.CatchUp(ctx)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	log.Info("took over as the active OMA", "state_position", follower.Applied(), "catch_up", time.Since(start).Round(time.Millisecond))
	return nil
}
