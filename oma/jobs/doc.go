// Package jobs runs the OMA's replication jobs: a Manager creates, starts,
// cancels and expires them, serves their exports, and applies what their
// VMAs report.
//
// # States
//
// A job follows the state machine of state.go:
//
//	pending -> queued -> snapshotting -> copying -> verifying -> finalizing -> completed
//
// (verifying only for a job that reads its copy back; skipping is allowed)
// with failed and cancelled reachable from every state that is not final.
// A job only moves forward: a late or repeated event can never take it
// back, and a final state is never left.
//
// # Changes
//
// Every change is a bbolt transaction; the lifecycle events and commands a
// change causes are written to the store's outbox in the same transaction
// and published (by oma/outbox) after it commits, so none is lost and none
// is published for a change that did not happen.
//
// # Files
//
// One concern a file: jobs.go creates, starts and cancels jobs (planned
// under a lock, nbdkit started without it); progress.go applies the VMAs'
// progress and status to them, a batch a transaction; expire.go expires
// the jobs left pending; leases.go answers a VMA's request for its exports
// and releases them; restore.go serves the exports of active jobs again
// after a restart; manager.go holds the Manager and its Config.
package jobs
