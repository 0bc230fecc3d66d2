// Package vmas registers the VMAs on the OMA and keeps their records: NATS
// credentials and access, durable consumers, API ports and SSH keys (their
// authorized_keys lines), each VMA's share of the NBD port pool,
// heartbeats and tunnel outages. It seals secrets to a VMA's announced key.
// It knows nothing of jobs or the inventory.
//
// # Files
//
// vmas.go registers VMAs, lets them into NATS and seals to them;
// apiports.go picks and checks their API ports; keys.go writes their
// authorized_keys lines; presence.go applies their heartbeats and tunnel
// outages; nbdports.go gives each VMA its share of the NBD port pool.
package vmas
