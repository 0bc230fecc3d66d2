package plans

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/store"
)

// Check outcomes, from best to worst.
const (
	OK      = "ok"
	Warning = "warning"
	Error   = "error"
)

// Check is one preflight check and what a person can do about it.
type Check struct {
	Check   string `json:"check"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// VMReport is the preflight of one VM of a plan.
type VMReport struct {
	ID     string  `json:"id"`
	Name   string  `json:"name"`
	Path   string  `json:"path"`
	VMAID  string  `json:"vma_id"`
	Status string  `json:"status"`
	Checks []Check `json:"checks"`
}

// Report is a plan's preflight.
type Report struct {
	Plan     string    `json:"plan"`
	At       time.Time `json:"at"`
	Status   string    `json:"status"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	// Blocks says whether the errors keep the plan from copying (they
	// do unless it was created with force).
	Blocks bool `json:"blocks"`
	// Checks are the plan's own: the room for its replicas.
	Checks []Check     `json:"checks"`
	VMs    []VMReport  `json:"vms"`
	Volume VolumeSpace `json:"volume_space"`
}

// VolumeSpace is the room the plan's replicas need where the OMA keeps
// volumes.
type VolumeSpace struct {
	Dir         string `json:"dir"`
	FreeBytes   int64  `json:"free_bytes"`
	NeededBytes int64  `json:"needed_bytes"`
}

// worse returns the worse of two outcomes.
func worse(a, b string) string {
	rank := map[string]int{OK: 0, Warning: 1, Error: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// maxFilter is the longest name filter a discover request may carry (the
// schema's optionalText): the preflight of a plan whose VMs' names add up
// to more discovers the whole vCenter instead, which the VMA retrieves in
// one call anyway and filters afterwards.
const maxFilter = 4096

// Preflight checks the plan named name before (and while) it copies:
// each VM's change tracking, snapshots and disks as a fresh discovery
// through its VMA reports them, that VMA's login to the vCenter, the VM's
// uniqueness, and the room for the replicas. It stores how many errors
// it found: the plan copies only when there are none, or with force.
func (m *Manager) Preflight(ctx context.Context, name string) (Report, error) {
	var (
		p   store.Plan
		vms []store.PlanVM
		all []store.PlanVM
	)
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		if p, err = store.GetPlan(tx, name); err != nil {
			return notFound(name, err)
		}
		if vms, err = store.PlanVMs(tx, name); err != nil {
			return err
		}
		all, err = store.AllPlanVMs(tx)
		return err
	})
	if err != nil {
		return Report{}, err
	}
	vc, err := m.vcenters.Get(p.VCenter)
	if err != nil {
		return Report{}, err
	}
	connected, err := m.inv.Connected()
	if err != nil {
		return Report{}, err
	}
	// Each VMA logs in and discovers the plan's VMs afresh.
	login := map[string]Check{}
	byVMA := map[string][]string{}
	for _, vm := range vms {
		byVMA[vm.VMAID] = append(byVMA[vm.VMAID], vm.Name)
	}
	for vma, names := range byVMA {
		switch {
		case !slices.Contains(vc.VMAs, vma):
			login[vma] = Check{"vma", Error, fmt.Sprintf("VMA %s may not use vCenter %s any more (its vmas: %s)", vma, vc.Name, strings.Join(vc.VMAs, ", "))}
		case !slices.Contains(connected, vma):
			login[vma] = Check{"vma", Error, fmt.Sprintf("VMA %s is not connected: start it, or check its SSH tunnel (GET /api/v1/vmas)", vma)}
		default:
			filter := strings.Join(slices.Compact(slices.Sorted(slices.Values(names))), ",")
			if len(filter) > maxFilter {
				filter = "" // too many names for one request: discover every VM, one retrieve all the same
			}
			err := m.discoverWith(ctx, vc, vma, filter)
			switch fault.KindOf(err) {
			case 0:
				if err == nil {
					login[vma] = Check{"vma", OK, fmt.Sprintf("VMA %s is connected and logged in to %s as %s", vma, vc.Host, vc.Username)}
				} else {
					login[vma] = Check{"vma", Error, fmt.Sprintf("VMA %s could not discover in %s: %v", vma, vc.Host, err)}
				}
			case fault.Unauthorized:
				login[vma] = Check{"vma", Error, fmt.Sprintf("vCenter %s refused the registered password of %s from VMA %s: set the new one with PUT /api/v1/vcenters/%s", vc.Host, vc.Username, vma, vc.Name)}
			default:
				login[vma] = Check{"vma", Error, fmt.Sprintf("VMA %s could not log in to %s: %v", vma, vc.Host, err)}
			}
		}
	}
	inv, err := m.inv.Inventory()
	if err != nil {
		return Report{}, err
	}
	r := Report{Plan: name, At: m.cfg.Now().UTC(), Status: OK, Checks: []Check{}, VMs: []VMReport{}}
	names, paths := map[string]int{}, map[string]int{}
	for _, v := range inv {
		if v.VCenter == vc.Host {
			names[v.Name]++
			paths[v.Path]++
		}
	}
	for _, vm := range vms {
		vr := VMReport{ID: vm.Key, Name: vm.Name, Path: vm.Path, VMAID: vm.VMAID, Status: OK}
		add := func(c Check) {
			vr.Checks = append(vr.Checks, c)
			vr.Status = worse(vr.Status, c.Status)
		}
		add(login[vm.VMAID])
		found, ok := findVM(inv, vm)
		if !ok {
			add(Check{"inventory", Error, fmt.Sprintf("VM %s (%s) is no longer in vCenter %s as VMA %s discovers it: remove it from the plan (PATCH remove_vms)", vm.Key, vm.Path, vc.Host, vm.VMAID)})
		} else {
			for _, c := range vmChecks(found.VM, m.cfg.VirtioWin) {
				add(c)
			}
			if vm.LastSync == nil {
				for _, d := range found.Disks {
					r.Volume.NeededBytes += d.CapacityBytes
				}
			}
		}
		other := ""
		for _, o := range all {
			if o.Plan != name && sameVM(o, vm) {
				other = o.Plan
			}
		}
		if other != "" {
			add(Check{"plans", Error, fmt.Sprintf("VM %s is in plan %q too: a VM may be in one plan only; remove it from one", vm.Key, other)})
		} else {
			add(Check{"plans", OK, "in no other plan"})
		}
		switch {
		case names[vm.Name] > 1:
			add(Check{"identity", Warning, fmt.Sprintf("%d VMs of %s are named %q: the plan pins this one by its id %s and instance UUID; check that it is the one meant", names[vm.Name], vc.Host, vm.Name, vm.Key)})
		case paths[vm.Path] > 1:
			add(Check{"identity", Warning, fmt.Sprintf("%d VMs of %s have the path %q: the plan pins this one by its id %s", paths[vm.Path], vc.Host, vm.Path, vm.Key)})
		default:
			add(Check{"identity", OK, "its name and path are unique"})
		}
		r.VMs = append(r.VMs, vr)
	}
	r.Checks = append(r.Checks, m.spaceCheck(&r.Volume))
	for _, c := range r.Checks {
		r.Status = worse(r.Status, c.Status)
		r.count(c.Status)
	}
	for _, vr := range r.VMs {
		r.Status = worse(r.Status, vr.Status)
		for _, c := range vr.Checks {
			r.count(c.Status)
		}
	}
	r.Blocks = r.Errors > 0 && !p.Force
	m.mu.Lock()
	err = m.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetPlan(tx, name)
		if err != nil {
			return notFound(name, err)
		}
		cur.PreflightErrors, cur.PreflightAt = r.Errors, r.At
		return store.PutPlan(tx, cur)
	})
	m.mu.Unlock()
	if r.Errors == 0 {
		m.Kick()
	}
	return r, err
}

func (r *Report) count(status string) {
	switch status {
	case Error:
		r.Errors++
	case Warning:
		r.Warnings++
	}
}

// findVM finds vm in the inventory as its VMA discovered it.
func findVM(inv []inventory.VM, vm store.PlanVM) (inventory.VM, bool) {
	for _, v := range inv {
		if v.VMAID == vm.VMAID && v.VCenter == vm.Host && v.ID == vm.Key &&
			(vm.InstanceUUID == "" || v.InstanceUUID == "" || v.InstanceUUID == vm.InstanceUUID) {
			return v, true
		}
	}
	return inventory.VM{}, false
}

// MinCBTHardwareVersion is the lowest virtual hardware version that has
// changed block tracking.
const MinCBTHardwareVersion = 7

// vmChecks checks what a discovery says of a VM: change tracking,
// snapshots, disks that cannot be snapshotted, and whether its guest can
// be converted (a Windows guest needs virtio-win, at virtioWin).
func vmChecks(vm events.VM, virtioWin string) []Check {
	var out []Check
	switch {
	case !strings.Contains(strings.ToLower(vm.GuestOS), "win"):
		out = append(out, Check{"conversion", OK, fmt.Sprintf("guest %s: virt-v2v converts it at cutover", vm.GuestOS)})
	case virtioWin == "":
		out = append(out, Check{"conversion", Warning, fmt.Sprintf("Windows guest (%s): its conversion needs the virtio-win drivers, which Debian does not package; set VIRTIO_WIN on the OMA to where they are, or its cutover is refused unless convert is false", vm.GuestOS)})
	default:
		out = append(out, Check{"conversion", OK, fmt.Sprintf("Windows guest (%s): converted with the virtio-win drivers at %s", vm.GuestOS, virtioWin)})
	}
	switch {
	case vm.CBTEnabled:
		out = append(out, Check{"cbt", OK, "changed block tracking is on"})
	case vm.HardwareVersion > 0 && vm.HardwareVersion < MinCBTHardwareVersion:
		out = append(out, Check{"cbt", Error, fmt.Sprintf("virtual hardware version %d has no changed block tracking (it needs %d): upgrade the VM's compatibility in vCenter, or every sync copies every disk whole", vm.HardwareVersion, MinCBTHardwareVersion)})
	default:
		out = append(out, Check{"cbt", Warning, "changed block tracking is off: the VMA turns it on before the first snapshot (a short reconfigure of the VM)"})
	}
	switch {
	case vm.Snapshots == 0:
		out = append(out, Check{"snapshots", OK, "no snapshot"})
	default:
		out = append(out, Check{"snapshots", Warning, fmt.Sprintf("the VM has %d snapshot(s), a chain %d deep: godwit's snapshot goes on top, and change tracking counts from a user's snapshot only after the first copy; consolidate or delete old snapshots if you can", vm.Snapshots, vm.SnapshotDepth)})
	}
	var bad []string
	for _, d := range vm.Disks {
		switch {
		case d.RDM:
			bad = append(bad, fmt.Sprintf("%s is a raw device mapping", d.Label))
		case strings.HasPrefix(d.Mode, "independent"):
			bad = append(bad, fmt.Sprintf("%s is %s", d.Label, d.Mode))
		}
	}
	if len(bad) > 0 {
		out = append(out, Check{"disks", Error, strings.Join(bad, "; ") + ": vCenter cannot snapshot such a disk; make it dependent (persistent) or detach it before migrating"})
	} else {
		out = append(out, Check{"disks", OK, fmt.Sprintf("%d disk(s), all can be snapshotted", len(vm.Disks))})
	}
	return out
}

// spaceCheck checks the room where the volumes go for v.NeededBytes.
func (m *Manager) spaceCheck(v *VolumeSpace) Check {
	dir := filepath.Join(m.cfg.DataDir, "volumes")
	if _, err := os.Stat(dir); err != nil {
		dir = m.cfg.DataDir
	}
	v.Dir = dir
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return Check{"space", Error, fmt.Sprintf("cannot tell the free space of %s: %v", dir, err)}
	}
	v.FreeBytes = int64(fs.Bavail) * int64(fs.Bsize)
	switch {
	case v.NeededBytes > v.FreeBytes:
		return Check{"space", Error, fmt.Sprintf("the new replicas need up to %d bytes (the disks' capacities) and %s has %d free: make room, or move VMs to a later plan", v.NeededBytes, dir, v.FreeBytes)}
	case v.NeededBytes > v.FreeBytes/10*9:
		return Check{"space", Warning, fmt.Sprintf("the new replicas need up to %d bytes of the %d free in %s: more than 90%%", v.NeededBytes, v.FreeBytes, dir)}
	}
	return Check{"space", OK, fmt.Sprintf("the new replicas need up to %d bytes; %s has %d free", v.NeededBytes, dir, v.FreeBytes)}
}
