package vmas

import (
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// DefaultNBDPortsPerVMA is how many ports of the NBD port pool each VMA's
// share holds when Config.NBDPortsPerVMA is zero: with the default pool
// 10100-10199, twelve VMAs with up to eight jobs at once each.
const DefaultNBDPortsPerVMA = 8

// defaultNBDPool is the NBD port pool when none is configured.
var defaultNBDPool = store.Ports{First: 10100, Last: 10199}

// shareSize returns how many ports a VMA's share holds: n, or
// DefaultNBDPortsPerVMA when n is 0, at most the whole pool.
func shareSize(pool store.Ports, n int) int {
	if n <= 0 {
		n = DefaultNBDPortsPerVMA
	}
	return min(n, pool.Last-pool.First+1)
}

// orDefaultPool returns pool, or 10100-10199 when it is zero.
func orDefaultPool(pool store.Ports) store.Ports {
	if pool == (store.Ports{}) {
		return defaultNBDPool
	}
	return pool
}

// freeShare returns the lowest range of n ports (shareSize) of pool that
// overlaps the share of no VMA of vmas but skip; VMAs registered before
// shares hold none. It fails with an Unavailable error naming the limit
// when the pool has no such range left.
func freeShare(vmas []store.VMA, pool store.Ports, n int, skip string) (store.Ports, error) {
	size := shareSize(pool, n)
	holders := 0
	for s := pool.First; s+size-1 <= pool.Last; {
		cand := store.Ports{First: s, Last: s + size - 1}
		next := 0
		for _, v := range vmas {
			if v.ID == skip || v.NBDPorts == nil {
				continue
			}
			if v.NBDPorts.First <= cand.Last && cand.First <= v.NBDPorts.Last {
				next = max(next, v.NBDPorts.Last+1)
			}
		}
		if next == 0 {
			return cand, nil
		}
		s = next
	}
	for _, v := range vmas {
		if v.ID != skip && v.NBDPorts != nil {
			holders++
		}
	}
	return store.Ports{}, fault.Errorf(fault.Unavailable, "id", "the NBD port pool %s has no %d free ports left for another VMA (%d VMAs hold a share of it; -nbd-ports-per-vma %d): widen the pool (-nbd-ports) or give new VMAs fewer ports",
		pool, size, holders, size)
}

// NBDPorts returns the ports of pool that VMA v's jobs may use and its SSH
// key may open: its share, within the pool; the whole pool for a VMA
// registered before shares. It fails with an Unavailable error when the
// share lies outside the pool (the pool was changed since).
func NBDPorts(v store.VMA, pool store.Ports) (store.Ports, error) {
	if v.NBDPorts == nil {
		return pool, nil
	}
	p := store.Ports{First: max(v.NBDPorts.First, pool.First), Last: min(v.NBDPorts.Last, pool.Last)}
	if p.First > p.Last {
		return store.Ports{}, fault.Errorf(fault.Unavailable, "vma_id", "VMA %s's NBD ports %s lie outside the pool %s (-nbd-ports changed since it was registered): give it a share of the pool with `oma vma nbd-ports -id %s` while the OMA is stopped",
			v.ID, v.NBDPorts, pool, v.ID)
	}
	return p, nil
}

// AssignNBDPorts gives VMA id of st a new share of pool, n ports
// (DefaultNBDPortsPerVMA when 0), the lowest no other VMA holds, and
// returns the VMA. It is how a VMA registered before shares, which has
// the whole pool, gets one, and how a VMA gets a share again after the
// pool changed. It fails with a NotFound error when the VMA is not
// registered, a Conflict while it has active jobs (their exports are on
// the ports it has now), or an Unavailable one when no share is free.
// active says which job states hold their ports: jobs.Active.
func AssignNBDPorts(st *store.Store, id string, pool store.Ports, n int, active func(state string) bool) (store.VMA, error) {
	pool = orDefaultPool(pool)
	var v store.VMA
	err := st.Update(func(tx *bbolt.Tx) error {
		var err error
		if v, err = store.GetVMA(tx, id); err != nil {
			return vmaNotFound(err, id)
		}
		all, err := store.Jobs(tx)
		if err != nil {
			return err
		}
		var busy []string
		for _, j := range all {
			if j.VMAID == id && active(j.State) {
				busy = append(busy, j.ID)
			}
		}
		if len(busy) > 0 {
			return fault.Errorf(fault.Conflict, "id", "VMA %s has active jobs (%s) whose exports are on its ports now: give it new ones when they have ended", id, strings.Join(busy, ", "))
		}
		vmas, err := store.VMAs(tx)
		if err != nil {
			return err
		}
		share, err := freeShare(vmas, pool, n, id)
		if err != nil {
			return err
		}
		v.NBDPorts = &share
		return store.PutVMA(tx, v)
	})
	if err != nil {
		return store.VMA{}, fmt.Errorf("assign nbd ports to vma %s: %w", id, err)
	}
	return v, nil
}

// vmaNotFound turns store.ErrNotFound into a NotFound error naming VMA id.
func vmaNotFound(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fault.Errorf(fault.NotFound, "id", "VMA %q is not registered", id)
	}
	return err
}

// pool returns the NBD port pool the exports are served from.
func (r *Registry) pool() store.Ports {
	return orDefaultPool(store.Ports{First: r.cfg.FirstPort, Last: r.cfg.LastPort})
}

// WarnShares logs the VMAs whose SSH key may open more NBD ports than
// their own jobs': those registered before shares, which have the whole
// pool, and those whose share lies outside the pool.
func (r *Registry) WarnShares() {
	vmas, err := r.VMAs()
	if err != nil {
		r.log.Error("read vmas", "err", err)
		return
	}
	pool := r.pool()
	for _, v := range vmas {
		if v.NBDPorts == nil {
			r.log.Warn("VMA registered before NBD port shares: its jobs and its SSH key have the whole pool; give it a share with `oma vma nbd-ports` while the OMA is stopped, then renew its authorized_keys line",
				"vma", v.ID, "nbd_ports", pool.String())
			continue
		}
		if _, err := NBDPorts(v, pool); err != nil {
			r.log.Warn("VMA's NBD ports are outside the pool: it gets no job until it has new ones", "vma", v.ID, "err", err)
		}
	}
}
