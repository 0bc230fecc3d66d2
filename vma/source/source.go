// Package source gives replication jobs their disk sources: the datastore
// transport (ranged HTTPS reads through vCenter's /folder endpoint) and the
// vddk transport (a supervised nbdkit vddk read over NBD), and picks one.
package source

import (
	"context"
	"fmt"

	"github.com/godwit/godwit/vma/jobs"
	"github.com/godwit/godwit/vma/source/datastore"
	"github.com/godwit/godwit/vma/source/vddk"
)

// Names of the transports, as -source takes them.
const (
	Auto      = "auto"
	Datastore = "datastore"
	VDDK      = "vddk"
)

// DatastoreSource reads a disk's flat extent through vCenter's /folder endpoint
// with the job's session. It works for any VM and needs nothing installed.
type DatastoreSource struct{}

// Name implements jobs.Source.
func (DatastoreSource) Name() string { return Datastore }

// Check implements jobs.Source: the datastore transport always can.
func (DatastoreSource) Check(context.Context) error { return nil }

// Open implements jobs.Source.
func (DatastoreSource) Open(ctx context.Context, d jobs.DiskRef) (jobs.Disk, error) {
	return datastore.Open(ctx, d.Session.Client, d.VM.DatacenterPath, d.Disk.File, d.Disk.CapacityBytes)
}

// VDDKSource reads a disk with nbdkit's vddk plugin and VMware's VDDK.
type VDDKSource struct {
	// Config carries what every disk shares: LibDir, Transports, Nbdkit,
	// Connections, Logger. The rest is filled for each disk.
	Config vddk.Config
}

// Name implements jobs.Source.
func (VDDKSource) Name() string { return VDDK }

// Check implements jobs.Source: the plugin and VDDK must be installed.
func (s VDDKSource) Check(ctx context.Context) error { return vddk.Check(ctx, s.Config) }

// Open implements jobs.Source.
func (s VDDKSource) Open(ctx context.Context, d jobs.DiskRef) (jobs.Disk, error) {
	thumb, err := d.Session.Thumbprint(ctx)
	if err != nil {
		return nil, err
	}
	cfg := s.Config
	cfg.Server, cfg.User, cfg.Password, cfg.Thumbprint = d.Session.Client.URL().Hostname(), d.VCenter.Username, d.VCenter.Password, thumb
	cfg.VM, cfg.Snapshot, cfg.File = d.VM.Ref.Value, d.Snapshot.Ref.Value, d.Disk.File
	return vddk.Open(ctx, cfg)
}

// New returns the source called name: datastore, vddk, or auto (vddk when
// nbdkit's vddk plugin and VDDK are installed, else datastore). vc holds
// what the vddk transport shares across disks.
func New(ctx context.Context, name string, vc vddk.Config) (jobs.Source, error) {
	switch name {
	case Datastore:
		return DatastoreSource{}, nil
	case VDDK:
		return VDDKSource{Config: vc}, nil
	case Auto, "":
		if vddk.Installed(ctx, vc) {
			return VDDKSource{Config: vc}, nil
		}
		return DatastoreSource{}, nil
	}
	return nil, fmt.Errorf("source %q: want auto, datastore or vddk", name)
}
