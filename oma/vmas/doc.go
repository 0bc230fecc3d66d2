// Package vmas registers the VMAs on the OMA and keeps their records: NATS
// credentials and access, durable consumers, API ports and SSH keys (their
// authorized_keys lines), each VMA's share of the NBD port pool,
// heartbeats and tunnel outages. It seals secrets to a VMA's announced key.
// It knows nothing of jobs or the inventory.
//
// # Files
//
// vmas.go registers VMAs, lets them into NATS, writes their authorized_keys
// lines, applies their heartbeats and tunnel outages, and seals to them;
// nbdports.go gives each VMA its share of the NBD port pool.
package vmas
