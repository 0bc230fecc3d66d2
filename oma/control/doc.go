// Package control is the OMA's logic: jobs and their exports, the
// inventory, VMAs, and the consumers that keep them up to date from the
// bus. The REST API translates requests into calls on a Control.
//
// Every change is a bbolt transaction; the lifecycle events a change
// causes are written to an outbox in the same transaction and published
// after it commits, so none is lost and none is published for a change
// that did not happen.
//
// # Files
//
// One concern a file: jobs.go creates, starts and cancels jobs (planned
// under a lock, nbdkit started without it); progress.go applies the VMAs'
// progress and status to them, a batch a transaction; replicas.go names replicas and their volume
// generations; exportrequests.go answers a VMA's request for its exports;
// inventory.go runs discoveries and keeps their results; vmas.go registers
// VMAs and records their heartbeats; outbox.go publishes what changes
// wrote; applied.go makes every event apply once; restore.go brings a
// restarted OMA back; control.go assembles the consumers in Run.
package control
