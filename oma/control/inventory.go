package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// DiscoverRequest asks a VMA to discover the VMs of a vCenter.
type DiscoverRequest struct {
	// VMAID is optional when exactly one VMA is registered.
	VMAID      string
	Cred       Credentials
	Datacenter string
	Filter     string
	// Timeout bounds the wait for the result; 0 means the configured default.
	Timeout time.Duration
}

// Discover publishes a discover request to a VMA and waits for its result,
// every page of it. A successful result also reaches the inventory through
// the consumer.
func (c *Control) Discover(ctx context.Context, req DiscoverRequest) (events.DiscoverResult, error) {
	if req.VMAID == "" {
		vmas, err := c.VMAs()
		if err != nil {
			return events.DiscoverResult{}, err
		}
		if len(vmas) != 1 {
			return events.DiscoverResult{}, errorf(Invalid, "vma_id", "required: %d VMAs are registered", len(vmas))
		}
		req.VMAID = vmas[0].ID
	}
	sealed, err := c.sealFor(req.VMAID, req.Cred.Password)
	if err != nil {
		return events.DiscoverResult{}, err
	}
	dr := &events.DiscoverRequest{
		RequestID: events.NewID(), VMAID: req.VMAID, VCenter: req.Cred.VCenter, Username: req.Cred.Username,
		Password: sealed, Datacenter: req.Datacenter, Filter: req.Filter,
	}
	timeout := req.Timeout
	if timeout == 0 {
		timeout = c.cfg.DiscoverTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.recordDiscover(dr); err != nil {
		return events.DiscoverResult{}, err
	}
	res, err := c.bus.Discover(wctx, dr)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return events.DiscoverResult{}, errorf(Timeout, "", "VMA %s sent no complete discovery result within %s: is it running and connected? (the request stays queued for it)", dr.VMAID, timeout)
	case err != nil:
		return events.DiscoverResult{}, err
	}
	if res.Error != nil {
		return res, discoverFailure(res.Error)
	}
	return res, nil
}

func discoverFailure(f *events.Failure) error {
	switch f.Code {
	case events.FailureAuth:
		return errorf(Unauthorized, "username", "%s", f.Message)
	case events.FailureNotFound:
		return errorf(NotFound, "datacenter", "%s", f.Message)
	case events.FailureInvalid:
		return errorf(Invalid, "", "%s", f.Message)
	case events.FailureUnreachable:
		return errorf(Upstream, "vcenter", "%s", f.Message)
	}
	return errorf(Upstream, "", "discovery failed: %s", f.Message)
}

// InventoryVM is a VM of the inventory with where it was found.
type InventoryVM struct {
	events.VM
	VMAID   string    `json:"vma_id"`
	VCenter string    `json:"vcenter"`
	Seen    time.Time `json:"discovered_at"`
	// ReplicaID names the VM's replica; CurrentReplica is its last
	// completed copy on the OMA, nil when there is none.
	ReplicaID      string   `json:"replica_id"`
	CurrentReplica *Replica `json:"current_replica"`
}

// Inventory returns every VM the OMA learned from discoveries.
func (c *Control) Inventory() ([]InventoryVM, error) {
	out := []InventoryVM{}
	err := c.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		if err != nil {
			return err
		}
		cur := currentJobs(all)
		invs, err := store.Inventories(tx)
		for _, inv := range invs {
			for _, vm := range inv.Result.VMs {
				rid, host := replicaID(inv.VMAID, inv.Result.VCenter.Host, vm), inv.Result.VCenter.Host
				out = append(out, InventoryVM{VM: vm, VMAID: inv.VMAID, VCenter: host, Seen: inv.StoredAt,
					ReplicaID: rid, CurrentReplica: lookupReplica(cur, rid, inv.VMAID, host, vm.ID)})
			}
		}
		return err
	})
	return out, err
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
		req, err := store.GetDiscoverRequest(tx, r.VMAID, r.RequestID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.log.Warn("ignored a discover result the OMA did not ask for", "vma", r.VMAID, "request", r.RequestID, "vcenter", r.VCenter.Host)
			return nil
		case err != nil:
			return err
		case req.VCenter != r.VCenter.Host:
			c.log.Warn("ignored a discover result for another vCenter than asked", "vma", r.VMAID, "request", r.RequestID,
				"asked", req.VCenter, "vcenter", r.VCenter.Host)
			return nil
		}
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

// recordDiscover records that the OMA publishes dr, so that its result
// may change the inventory.
func (c *Control) recordDiscover(dr *events.DiscoverRequest) error {
	return c.store.PutDiscoverRequestOnce(store.DiscoverRequest{RequestID: dr.RequestID, VMAID: dr.VMAID, VCenter: dr.VCenter, At: c.cfg.Now().UTC()})
}

// submitDiscover answers a VMA that submits a discover request of its own
// (from its API's /discover): the OMA records it and publishes it, as it
// publishes its own.
func (c *Control) submitDiscover(ctx context.Context, subj string, data []byte) (any, error) {
	ev, dr, err := c.bus.CheckSubmission(subj, data)
	if err != nil {
		return nil, errorf(Invalid, "", "discover request refused: %v", err)
	}
	if err := c.recordDiscover(dr); err != nil {
		return nil, err
	}
	if _, err := c.bus.PublishEvent(ctx, ev); err != nil {
		return nil, err
	}
	return map[string]string{"request_id": dr.RequestID}, nil
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
