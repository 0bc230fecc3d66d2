package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// applyOnce runs apply in one transaction with the event's id, unless the
// event was applied before; the id is recorded in the same transaction.
func (c *Control) applyOnce(ev events.Event, apply func(tx *bbolt.Tx) error) error {
	return c.store.Update(func(tx *bbolt.Tx) error {
		if store.Applied(tx, ev.ID) {
			return nil
		}
		if err := apply(tx); err != nil {
			return err
		}
		return store.MarkApplied(tx, ev.ID, c.cfg.Now())
	})
}

// applyDiscoverResult stores a successful discovery as the inventory of
// its VMA and vCenter. The pages of a paged result are kept until the last
// one arrives; the inventory then changes once, with all of them.
func (c *Control) applyDiscoverResult(_ context.Context, ev events.Event, p events.Payload) error {
	r, ok := p.(*events.DiscoverResult)
	if !ok {
		return fmt.Errorf("%w: %s on the discovery consumer", bus.ErrPoison, ev.Type)
	}
	if r.Error != nil {
		return nil // a failed discovery changes nothing
	}
	return c.applyOnce(ev, func(tx *bbolt.Tx) error {
		whole, complete, err := c.assemble(tx, r)
		if err != nil || !complete {
			return err
		}
		merged := whole
		merged.VCenter.Datacenter, merged.Filter = "", ""
		old, err := store.GetInventory(tx, r.VMAID, r.VCenter.Host)
		switch {
		case errors.Is(err, store.ErrNotFound):
			merged.VMs = whole.VMs
		case err != nil:
			return err
		default:
			merged.VMs = mergeVMs(old.Result.VMs, &whole)
		}
		return store.PutInventory(tx, store.Inventory{VMAID: r.VMAID, Result: merged, StoredAt: c.cfg.Now().UTC()})
	})
}

// assemble adds a page to the kept pages of its request. When it was the
// last one missing it returns the whole result and forgets the pages.
func (c *Control) assemble(tx *bbolt.Tx, r *events.DiscoverResult) (events.DiscoverResult, bool, error) {
	if r.Pages <= 1 {
		return *r, true, nil
	}
	kept, err := store.DiscoverPages(tx, r.VMAID, r.RequestID)
	if err != nil {
		return events.DiscoverResult{}, false, err
	}
	var pages events.DiscoverPages
	for _, p := range kept {
		pages.Add(p)
	}
	if pages.Add(*r) {
		return pages.Result(), true, store.DeleteDiscoverPages(tx, r.VMAID, r.RequestID)
	}
	if len(kept) > 0 && kept[0].Pages != r.Pages { // the VMA started over
		if err := store.DeleteDiscoverPages(tx, r.VMAID, r.RequestID); err != nil {
			return events.DiscoverResult{}, false, err
		}
	}
	return events.DiscoverResult{}, false, store.PutDiscoverPage(tx, *r, c.cfg.Now())
}

// mergeVMs folds a discovery into the VMs known before: the VMs it found
// replace their old selves; an unfiltered discovery also drops the VMs of
// its scope (one datacenter, or all) that it did not find, as they are gone.
func mergeVMs(old []events.VM, r *events.DiscoverResult) []events.VM {
	found := map[string]bool{}
	for _, vm := range r.VMs {
		found[vm.ID] = true
	}
	out := []events.VM{}
	for _, vm := range old {
		inScope := r.Filter == "" && (r.VCenter.Datacenter == "" || vm.Datacenter == r.VCenter.Datacenter)
		if !found[vm.ID] && !inScope {
			out = append(out, vm)
		}
	}
	out = append(out, r.VMs...)
	slices.SortFunc(out, func(a, b events.VM) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// applyProgress applies progress and replication status to their job.
// Counters move only with a higher sequence number; the state moves only
// forward. A final job never changes.
func (c *Control) applyProgress(ctx context.Context, ev events.Event, p events.Payload) error {
	var jobID, vmaID string
	switch v := p.(type) {
	case *events.Progress:
		jobID, vmaID = v.JobID, v.VMAID
	case *events.ReplicationStatus:
		jobID, vmaID = v.JobID, v.VMAID
	default:
		return fmt.Errorf("%w: %s on the progress consumer", bus.ErrPoison, ev.Type)
	}
	var final bool
	err := c.applyOnce(ev, func(tx *bbolt.Tx) error {
		j, err := store.GetJob(tx, jobID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s for unknown job %s", bus.ErrPoison, ev.Type, jobID)
		}
		if err != nil {
			return err
		}
		if j.VMAID != vmaID {
			return fmt.Errorf("%w: %s for job %s from VMA %s, not its own", bus.ErrPoison, ev.Type, jobID, vmaID)
		}
		if jobs.Final(j.State) {
			return nil // late news about a finished job
		}
		switch v := p.(type) {
		case *events.Progress:
			err = c.progress(tx, &j, v)
		case *events.ReplicationStatus:
			err = c.status(tx, &j, v)
		}
		if err != nil {
			return err
		}
		final = jobs.Final(j.State)
		return store.PutJob(tx, j)
	})
	if err != nil {
		return err
	}
	if final {
		c.release(jobID)
	}
	c.kick()
	return nil
}

func (c *Control) progress(tx *bbolt.Tx, j *store.Job, p *events.Progress) error {
	if p.Seq > j.LastSeq {
		j.LastSeq = p.Seq
		j.BytesTotal, j.BytesDone, j.RateBytesPerSecond = p.BytesTotal, p.BytesDone, p.RateBytesPerSecond
		for _, dp := range p.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dp.Key {
					j.Disks[i].BytesTotal, j.Disks[i].BytesDone = dp.BytesTotal, dp.BytesDone
				}
			}
		}
		j.UpdatedAt = c.cfg.Now().UTC()
	}
	to, err := jobs.FromPhase(p.Phase)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	_, err = c.transition(tx, j, to, "")
	return err
}

func (c *Control) status(tx *bbolt.Tx, j *store.Job, s *events.ReplicationStatus) error {
	to, err := jobs.FromStatus(s.State)
	if err != nil {
		return fmt.Errorf("%w: %v", bus.ErrPoison, err)
	}
	if s.Seq > j.LastSeq {
		j.LastSeq = s.Seq
	}
	why := ""
	if s.Error != nil {
		why = s.Error.Message
	}
	moved, err := c.transition(tx, j, to, why)
	if err != nil || !moved {
		return err
	}
	if to == events.JobCompleted {
		for _, dc := range s.Disks {
			for i := range j.Disks {
				if j.Disks[i].Key == dc.Key {
					j.Disks[i].ChangeID = dc.ChangeID
					j.Disks[i].BytesDone = j.Disks[i].BytesTotal
				}
			}
		}
		j.BytesDone = j.BytesTotal
		j.RateBytesPerSecond = 0
	}
	return nil
}
