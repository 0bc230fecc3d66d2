// Package control assembles the OMA's logic from its parts and runs them:
// the VMAs (oma/vmas), the inventory (oma/inventory), the jobs (oma/jobs),
// the outbox (oma/outbox), and the consumers that keep them up to date from
// the bus. A Control has the methods of its parts; the REST API calls them.
//
// # Restore and Run
//
// Restore brings a restarted OMA back: NATS access for the registered VMAs,
// the pruning of old event ids, the exports of active jobs, then the
// outbox. Run creates the OMA's durable consumers, serves export requests
// and discover submissions, and runs the consumers (discover results,
// progress in batches, heartbeats, tunnel outages) and the loops (outbox,
// pruning, stream limits, expiry of pending jobs) until its context ends.
//
// # Files
//
// control.go assembles the parts and runs them; restore.go restores them;
// prune.go prunes what the store keeps of applied events.
package control
