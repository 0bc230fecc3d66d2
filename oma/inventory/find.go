package inventory

import (
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// Located is a VM found in the inventory, with where it was found.
type Located struct {
	VM      events.VM
	VMAID   string
	VCenter string
}

// Ref names a VM to Find: its id, and the VMA and the vCenter that found
// it when the id alone is ambiguous.
type Ref struct {
	VMID    string
	VMAID   string
	VCenter string
}

// Find looks a VM up by id in the inventory, narrowed to a VMA and a
// vCenter when given. VM ids repeat across vCenters: when several VMs
// match, the caller must say which (a Conflict naming vma_id or vcenter).
func Find(tx *bbolt.Tx, req Ref) (Located, error) {
	found, err := FindAll(tx, req)
	if err != nil {
		return Located{}, err
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var where []string
		field := "vcenter"
		for _, f := range found {
			where = append(where, "VMA "+f.VMAID+" in vCenter "+f.VCenter)
			if f.VMAID != found[0].VMAID {
				field = "vma_id"
			}
		}
		return Located{}, fault.Errorf(fault.Conflict, field, "VM %s was discovered %d times (%s): name the %s", req.VMID, len(found), strings.Join(where, ", "), field)
	}
	where := "the inventory"
	if req.VMAID != "" || req.VCenter != "" {
		where = fmt.Sprintf("the inventory of VMA %q, vCenter %q", req.VMAID, req.VCenter)
	}
	return Located{}, fault.Errorf(fault.NotFound, "source_vm.id", "VM %s is not in %s: discover it first (POST /api/v1/discover, or the VMA's POST /api/v1/discover)", req.VMID, where)
}

// FindAll returns every VM of the inventory with req's id, narrowed to a
// VMA and a vCenter when given: one per VMA and vCenter that found it.
func FindAll(tx *bbolt.Tx, req Ref) ([]Located, error) {
	invs, err := store.Inventories(tx)
	if err != nil {
		return nil, err
	}
	var found []Located
	for _, inv := range invs {
		if req.VMAID != "" && inv.VMAID != req.VMAID || req.VCenter != "" && inv.Result.VCenter.Host != req.VCenter {
			continue
		}
		for _, vm := range inv.Result.VMs {
			if vm.ID == req.VMID {
				found = append(found, Located{VM: vm, VMAID: inv.VMAID, VCenter: inv.Result.VCenter.Host})
			}
		}
	}
	return found, nil
}
