package jobs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
)

// locate finds the VM a request names. When several VMAs discovered it in
// one vCenter and the request names none, it chooses one (chooseVMA). A
// VMA the request names must be allowed for the vCenter when the vCenter
// is registered.
func (m *Manager) locate(tx *bbolt.Tx, req CreateRequest) (inventory.Located, error) {
	ref := inventory.Ref{VMID: req.VM.ID, VMAID: req.VMAID, VCenter: req.VCenter}
	found, err := inventory.FindAll(tx, ref)
	if err != nil {
		return inventory.Located{}, err
	}
	if len(found) < 2 || req.VMAID != "" {
		loc, err := inventory.Find(tx, ref)
		if err != nil {
			return loc, err
		}
		if allowed, err := allowedVMAs(tx, loc.VCenter); err != nil || len(allowed) == 0 || slices.Contains(allowed, loc.VMAID) {
			return loc, err
		}
		return inventory.Located{}, fault.Errorf(fault.Invalid, "vma_id", "VMA %s is not allowed for vCenter %s (its vmas: %s): name another, or add it with PUT /api/v1/vcenters/{name}",
			loc.VMAID, loc.VCenter, strings.Join(allowedOr(tx, loc.VCenter), ", "))
	}
	for _, f := range found[1:] {
		if f.VCenter != found[0].VCenter {
			return inventory.Find(tx, ref) // a Conflict naming vcenter
		}
	}
	return m.chooseVMA(tx, found, req.ReplicationType)
}

// allowedVMAs returns the VMAs allowed for the vCenter at host: those of
// the registered vCenters with that host; none when it is not registered.
func allowedVMAs(tx *bbolt.Tx, host string) ([]string, error) {
	vcs, err := store.VCenters(tx)
	if err != nil {
		return nil, err
	}
	var allowed []string
	for _, vc := range vcs {
		if vc.Host == host {
			allowed = append(allowed, vc.VMAs...)
		}
	}
	return allowed, nil
}

// allowedOr is allowedVMAs for a message.
func allowedOr(tx *bbolt.Tx, host string) []string {
	allowed, _ := allowedVMAs(tx, host)
	return allowed
}

// chooseVMA picks, among the VMAs that found the same VM, the one a job
// goes to: among those allowed for the vCenter (its registered vmas, when
// it is registered) and connected (a fresh heartbeat), the one with the
// most free capacity (its capacity less its jobs in the queue, waiting or
// running), ties to the one moving the fewest bytes per second now, then
// by id. An incremental job needs the VMA whose replica has a completed
// copy: the replicas are kept per VMA.
func (m *Manager) chooseVMA(tx *bbolt.Tx, found []inventory.Located, typ string) (inventory.Located, error) {
	allowed, err := allowedVMAs(tx, found[0].VCenter)
	if err != nil {
		return inventory.Located{}, err
	}
	inQueue := m.cfg.Queue.PerVMA()
	now := m.cfg.Now()
	type candidate struct {
		loc  inventory.Located
		free int
		bps  int64
	}
	var cands []candidate
	var why []string
	for _, f := range found {
		if len(allowed) > 0 && !slices.Contains(allowed, f.VMAID) {
			why = append(why, f.VMAID+": not allowed for the vCenter")
			continue
		}
		v, err := store.GetVMA(tx, f.VMAID)
		if err != nil {
			why = append(why, f.VMAID+": not registered")
			continue
		}
		capacity, down := queue.VMASlots(v, now, m.cfg.HeartbeatTimeout)
		if down != "" {
			why = append(why, f.VMAID+": "+down)
			continue
		}
		if typ == events.ReplicationIncremental {
			has, err := hasCopy(tx, replicas.ID(f.VMAID, f.VCenter, f.VM), f)
			if err != nil {
				return inventory.Located{}, err
			}
			if !has {
				why = append(why, f.VMAID+": holds no completed copy of the VM")
				continue
			}
		}
		c := candidate{loc: f, free: capacity - inQueue[f.VMAID]}
		if v.Load != nil {
			c.bps = v.Load.BytesPerSecond
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return inventory.Located{}, fault.Errorf(fault.Conflict, "vma_id", "VM %s was discovered by %d VMAs and none can take the job (%s): name one in vma_id",
			found[0].VM.ID, len(found), strings.Join(why, "; "))
	}
	best := slices.MinFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.free, a.free), cmp.Compare(a.bps, b.bps), cmp.Compare(a.loc.VMAID, b.loc.VMAID))
	})
	m.log.Info("VMA chosen", "vm", best.loc.VM.ID, "vma", best.loc.VMAID, "free", best.free, "candidates", len(found))
	return best.loc, nil
}

// hasCopy reports whether replica rid of the VM found at f has a completed
// job.
func hasCopy(tx *bbolt.Tx, rid string, f inventory.Located) (bool, error) {
	js, err := store.JobsOf(tx, rid, f.VM.ID)
	if err != nil {
		return false, fmt.Errorf("jobs of replica %s: %w", rid, err)
	}
	for _, j := range js {
		if j.State == events.JobCompleted && replicas.Belongs(j, rid, f.VMAID, f.VCenter, f.VM.ID) {
			return true, nil
		}
	}
	return false, nil
}
