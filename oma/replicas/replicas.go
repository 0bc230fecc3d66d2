// Package replicas names the copies on the OMA of source VMs and finds
// which job's volumes make each one current. It reads jobs from the store
// and decides nothing about them.
//
// A replica is the copy on the OMA of one source VM, known by the VMA that
// reads it, the vCenter and the VM's instance UUID: morefs such as vm-100
// repeat across vCenters, so they alone cannot name a replica. Its volumes
// live in volumes/<replica id>/disk-<key>.g<generation>.raw. An initial job
// writes a new generation and never touches the one before; an incremental
// job writes into the generation of the completed job whose change ids it
// uses. The current replica is what the newest completed job of the
// replica left. Jobs from before replicas (no ReplicaID) wrote
// volumes/<vm>/disk-<key>.raw; they count as generation 0 of the replica
// of their VMA, vCenter and VM id.
package replicas

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/store"
)

// Replica is the current replica of a source VM: the generation and the
// volume files the newest completed job of the replica left.
type Replica struct {
	ID         string `json:"replica_id"`
	Generation int    `json:"generation"`
	// JobID is the completed job that made this generation current.
	JobID       string        `json:"job_id"`
	CompletedAt *time.Time    `json:"completed_at,omitempty"`
	Disks       []ReplicaDisk `json:"disks"`
}

// ReplicaDisk is one disk of a replica: the file that holds it.
type ReplicaDisk struct {
	Key        int32  `json:"key"`
	VolumePath string `json:"volume_path"`
	ChangeID   string `json:"change_id,omitempty"`
}

// ID names the replica of vm as found by a VMA in a vCenter: 128
// bits of the SHA-256 of VMA, vCenter and the VM's instance UUID, after a
// readable part, the instance UUID itself. Without an instance UUID in the
// inventory the VM is known by its BIOS UUID and VM id (BIOS UUIDs repeat
// in cloned VMs), and the readable part is the VM id. A VM re-registered
// under a new moref keeps its instance UUID, and so its replica. The id is
// a safe path component and subject-free: every character but letters,
// digits, '-' and '_' is replaced.
func ID(vmaID, vcenter string, vm events.VM) string {
	identity, readable := "instance:"+vm.InstanceUUID, vm.InstanceUUID
	if vm.InstanceUUID == "" {
		identity, readable = "uuid:"+vm.UUID+"\x00moref:"+vm.ID, vm.ID
	}
	sum := sha256.Sum256([]byte(vmaID + "\x00" + vcenter + "\x00" + identity))
	name := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, readable)
	if len(name) > 64 {
		name = name[:64]
	}
	return name + "-" + hex.EncodeToString(sum[:16])
}

// legacyKey is the replica a job from before replicas belongs to.
func legacyKey(vmaID, vcenter, vmID string) string {
	return "legacy\x00" + vmaID + "\x00" + vcenter + "\x00" + vmID
}

// Key returns the replica j belongs to: its replica id, or for a job from
// before replicas a key made of its VMA, vCenter and VM id.
func Key(j store.Job) string {
	if j.ReplicaID != "" {
		return j.ReplicaID
	}
	return legacyKey(j.VMAID, j.VCenter, j.VM.ID)
}

// Belongs reports whether j belongs to the replica rid of VM vmID, found
// by VMA vmaID in vCenter vcenter.
func Belongs(j store.Job, rid, vmaID, vcenter, vmID string) bool {
	k := Key(j)
	return k == rid || k == legacyKey(vmaID, vcenter, vmID)
}

// Newer reports whether completed job a ended after completed job b.
func Newer(a, b store.Job) bool {
	at, bt := a.CreatedAt, b.CreatedAt
	if a.FinishedAt != nil {
		at = *a.FinishedAt
	}
	if b.FinishedAt != nil {
		bt = *b.FinishedAt
	}
	if at.Equal(bt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return at.After(bt)
}

// Current returns the newest completed job of every replica, by
// replica key.
func Current(all []store.Job) map[string]store.Job {
	cur := map[string]store.Job{}
	for _, j := range all {
		if j.State != events.JobCompleted {
			continue
		}
		k := Key(j)
		if c, ok := cur[k]; !ok || Newer(j, c) {
			cur[k] = j
		}
	}
	return cur
}

// replicaOf describes the replica a completed job left.
func replicaOf(j store.Job) *Replica {
	r := &Replica{ID: j.ReplicaID, Generation: j.Generation, JobID: j.ID, CompletedAt: j.FinishedAt}
	for _, d := range j.Disks {
		r.Disks = append(r.Disks, ReplicaDisk{Key: d.Key, VolumePath: d.Volume, ChangeID: d.ChangeID})
	}
	return r
}

// Lookup returns the current replica of rid (or of the legacy
// jobs of VMA, vCenter and VM id), nil when none completed.
func Lookup(cur map[string]store.Job, rid, vmaID, vcenter, vmID string) *Replica {
	if j, ok := cur[rid]; ok {
		return replicaOf(j)
	}
	if j, ok := cur[legacyKey(vmaID, vcenter, vmID)]; ok {
		return replicaOf(j)
	}
	return nil
}

// CurrentOf returns the current replica of the source VM of job j in st:
// which files hold the last completed copy. It is nil when no job of that
// replica has completed.
func CurrentOf(st *store.Store, j store.Job) (*Replica, error) {
	var all []store.Job
	err := st.View(func(tx *bbolt.Tx) error {
		var err error
		all, err = store.Jobs(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("current replica of %s: %w", j.ID, err)
	}
	return Lookup(Current(all), Key(j), j.VMAID, j.VCenter, j.VM.ID), nil
}

// VolumePath is where under dataDir generation gen of disk key of a
// replica is kept.
func VolumePath(dataDir, replica string, key int32, generation int) string {
	return filepath.Join(dataDir, "volumes", replica, fmt.Sprintf("disk-%d.g%d.raw", key, generation))
}
