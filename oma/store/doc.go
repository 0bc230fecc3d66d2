// Package store keeps the OMA's state in one bbolt file: jobs, the VM
// inventory, export leases, registered VMAs and vCenters, API token
// hashes, and the ids of applied events (for idempotent consumers).
//
// Every method runs in its own transaction unless it takes a *bbolt.Tx;
// Update lets a caller combine several changes in one transaction, so that
// an event and its effect are committed together. ApplyOnce and OnceIn
// apply an event at most once: its id is recorded in the transaction of
// its effect, and Prune forgets the ids once the streams cannot redeliver
// them.
//
// No secret is stored in the clear: tokens are kept as SHA-256 hashes, VMAs
// by their public keys, and vCenter passwords only sealed under the OMA's
// at-rest key, which lives in its own file (oma/atrest).
package store
