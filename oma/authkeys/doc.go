// Package authkeys checks a VMA's SSH public key and writes the OpenSSH
// authorized_keys line that confines it to the forwards the VMA needs: NATS,
// and the NBD export pool; its API's remote forward is a Unix socket,
// which no authorized_keys option names.
package authkeys
