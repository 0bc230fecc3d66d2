package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// registry is what the inventory needs of the VMAs; *vmas.Registry
// satisfies it.
type registry interface {
	VMAs() ([]store.VMA, error)
	Seal(vmaID string, s secret.String) (events.Sealed, error)
}

var _ registry = (*vmas.Registry)(nil)

// Config configures a Keeper. The zero value works.
type Config struct {
	// DiscoverTimeout bounds a discovery when the request sets none; 0 means 60s.
	DiscoverTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Keeper runs discoveries through the VMAs and keeps what they found. It
// is safe for concurrent use.
type Keeper struct {
	cfg   Config
	store *store.Store
	bus   *bus.Conn
	vmas  registry
	log   *slog.Logger
}

// New returns a Keeper of the inventory in st, asking the VMAs of reg
// through conn.
func New(cfg Config, st *store.Store, conn *bus.Conn, reg registry) *Keeper {
	if cfg.DiscoverTimeout == 0 {
		cfg.DiscoverTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{cfg: cfg, store: st, bus: conn, vmas: reg, log: log}
}

// DiscoverRequest asks a VMA to discover the VMs of a vCenter.
type DiscoverRequest struct {
	// VMAID is optional when exactly one VMA is registered.
	VMAID      string
	Cred       vmas.VCenterCredentials
	Datacenter string
	Filter     string
	// Timeout bounds the wait for the result; 0 means the configured default.
	Timeout time.Duration
}

// Discover publishes a discover request to a VMA and waits for its result,
// every page of it. A successful result also reaches the inventory through
// the consumer.
func (k *Keeper) Discover(ctx context.Context, req DiscoverRequest) (events.DiscoverResult, error) {
	if req.VMAID == "" {
		vmas, err := k.vmas.VMAs()
		if err != nil {
			return events.DiscoverResult{}, err
		}
		if len(vmas) != 1 {
			return events.DiscoverResult{}, fault.Errorf(fault.Invalid, "vma_id", "required: %d VMAs are registered", len(vmas))
		}
		req.VMAID = vmas[0].ID
	}
	sealed, err := k.vmas.Seal(req.VMAID, req.Cred.Password)
	if err != nil {
		return events.DiscoverResult{}, err
	}
	dr := &events.DiscoverRequest{
		RequestID: events.NewID(), VMAID: req.VMAID, VCenter: req.Cred.VCenter, Username: req.Cred.Username,
		Password: sealed, Datacenter: req.Datacenter, Filter: req.Filter, CAPEM: req.Cred.CAPEM, Thumbprint: req.Cred.Thumbprint,
	}
	timeout := req.Timeout
	if timeout == 0 {
		timeout = k.cfg.DiscoverTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := k.recordDiscover(dr); err != nil {
		return events.DiscoverResult{}, err
	}
	res, err := k.bus.Discover(wctx, dr)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return events.DiscoverResult{}, fault.Errorf(fault.Timeout, "", "VMA %s sent no complete discovery result within %s: is it running and connected? (the request stays queued for it)", dr.VMAID, timeout)
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
		return fault.Errorf(fault.Unauthorized, "username", "%s", f.Message)
	case events.FailureNotFound:
		return fault.Errorf(fault.NotFound, "datacenter", "%s", f.Message)
	case events.FailureInvalid:
		return fault.Errorf(fault.Invalid, "", "%s", f.Message)
	case events.FailureUnreachable:
		return fault.Errorf(fault.Upstream, "vcenter", "%s", f.Message)
	}
	return fault.Errorf(fault.Upstream, "", "discovery failed: %s", f.Message)
}

// VM is a VM of the inventory with where it was found.
type VM struct {
	events.VM
	VMAID   string    `json:"vma_id"`
	VCenter string    `json:"vcenter"`
	Seen    time.Time `json:"discovered_at"`
	// ReplicaID names the VM's replica; CurrentReplica is its last
	// completed copy on the OMA, nil when there is none.
	ReplicaID      string            `json:"replica_id"`
	CurrentReplica *replicas.Replica `json:"current_replica"`
}

// Inventory returns every VM the OMA learned from discoveries.
func (k *Keeper) Inventory() ([]VM, error) {
	out := []VM{}
	err := k.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Jobs(tx)
		if err != nil {
			return err
		}
		cur := replicas.Current(all)
		invs, err := store.Inventories(tx)
		for _, inv := range invs {
			for _, vm := range inv.Result.VMs {
				rid, host := replicas.ID(inv.VMAID, inv.Result.VCenter.Host, vm), inv.Result.VCenter.Host
				out = append(out, VM{VM: vm, VMAID: inv.VMAID, VCenter: host, Seen: inv.StoredAt,
					ReplicaID: rid, CurrentReplica: replicas.Lookup(cur, rid, inv.VMAID, host, vm.ID)})
			}
		}
		return err
	})
	return out, err
}

// ApplyDiscoverResult stores a successful discovery as the inventory of
// its VMA and vCenter. The pages of a paged result are kept until the last
// one arrives; the inventory then changes once, with all of them.
func (k *Keeper) ApplyDiscoverResult(_ context.Context, ev events.Event, p events.Payload) error {
	r, ok := p.(*events.DiscoverResult)
	if !ok {
		return fmt.Errorf("%w: %s on the discovery consumer", bus.ErrPoison, ev.Type)
	}
	if r.Error != nil {
		return nil // a failed discovery changes nothing
	}
	return k.store.ApplyOnce(ev, k.cfg.Now(), func(tx *bbolt.Tx) error {
		req, err := store.GetDiscoverRequest(tx, r.VMAID, r.RequestID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			k.log.Warn("ignored a discover result the OMA did not ask for", "vma", r.VMAID, "request", r.RequestID, "vcenter", r.VCenter.Host)
			return nil
		case err != nil:
			return err
		case req.VCenter != r.VCenter.Host:
			k.log.Warn("ignored a discover result for another vCenter than asked", "vma", r.VMAID, "request", r.RequestID,
				"asked", req.VCenter, "vcenter", r.VCenter.Host)
			return nil
		}
		whole, complete, err := k.assemble(tx, r)
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
		return store.PutInventory(tx, store.Inventory{VMAID: r.VMAID, Result: merged, StoredAt: k.cfg.Now().UTC()})
	})
}

// recordDiscover records that the OMA publishes dr, so that its result
// may change the inventory.
func (k *Keeper) recordDiscover(dr *events.DiscoverRequest) error {
	return k.store.PutDiscoverRequestOnce(store.DiscoverRequest{RequestID: dr.RequestID, VMAID: dr.VMAID, VCenter: dr.VCenter, At: k.cfg.Now().UTC()})
}

// SubmitDiscover answers a VMA that submits a discover request of its own
// (from its API's /discover): the OMA records it and publishes it, as it
// publishes its own.
func (k *Keeper) SubmitDiscover(ctx context.Context, subj string, data []byte) (any, error) {
	ev, dr, err := k.bus.CheckSubmission(subj, data)
	if err != nil {
		return nil, fault.Errorf(fault.Invalid, "", "discover request refused: %v", err)
	}
	if err := k.recordDiscover(dr); err != nil {
		return nil, err
	}
	if _, err := k.bus.PublishEvent(ctx, ev); err != nil {
		return nil, err
	}
	return map[string]string{"request_id": dr.RequestID}, nil
}

// assemble adds a page to the kept pages of its request. When it was the
// last one missing it returns the whole result and forgets the pages.
func (k *Keeper) assemble(tx *bbolt.Tx, r *events.DiscoverResult) (events.DiscoverResult, bool, error) {
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
	return events.DiscoverResult{}, false, store.PutDiscoverPage(tx, *r, k.cfg.Now())
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
