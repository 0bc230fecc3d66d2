// Package authkeys checks a VMA's SSH public key and writes the OpenSSH
// authorized_keys line that confines it to the forwards the VMA needs: NATS,
// the NBD export pool, and one remote forward for the VMA's own API.
package authkeys
