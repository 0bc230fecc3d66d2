// Package inventory runs discoveries through the VMAs and keeps the VMs
// they found, by VMA and vCenter, each shown with its current replica.
//
// # Results
//
// Only the results of discover requests the OMA published (its own, or a
// VMA's submitted through it) change the inventory, and only for the VMA
// and vCenter asked. A paged result is kept page by page and changes the
// inventory once, when its last page arrives. An unfiltered discovery
// drops the VMs of its scope it did not find.
//
// # Files
//
// inventory.go runs discoveries and applies their results; find.go finds
// a VM of the inventory by id, for a new job.
package inventory
