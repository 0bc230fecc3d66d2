// Package datastore reads a VM disk through vCenter's datastore HTTP
// endpoint (/folder): a copier.Source for powered-off VMs, snapshots and the
// simulator, where no VDDK is at hand.
//
// # Which file is read
//
// A disk's backing ("[ds] vm/vm.vmdk") is a small text descriptor; the data
// is the extent it names, such as vm-flat.vmdk. Open fetches the descriptor
// (at most MaxDescriptorSize bytes), accepts only a monolithic flat disk (one
// FLAT or VMFS extent whose size is the disk's capacity) and refuses sparse,
// SESparse, multi-extent, raw-device, encrypted and unknown formats with
// ErrUnsupported.
//
// # How it is read
//
// Each ReadAt is one HTTPS GET with a Range header, sent with the SDK
// client's session cookie and TLS trust over a copy of its transport that
// keeps enough idle connections for the copier's requests in flight. The
// answer must be 206 with the matching Content-Range and exactly the bytes
// asked for; they are read straight into the caller's buffer.
package datastore
