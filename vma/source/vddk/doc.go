// Package vddk reads a VM's disk at a snapshot through VMware's VDDK: it
// runs nbdkit's vddk plugin on a Unix socket in a private directory and
// reads the export with the project's own NBD client (vma/nbd, through
// vma/copier/export), so a [Disk] is a copier Source with Extents.
//
// # Supervision
//
// [Open] first checks that nbdkit and its vddk plugin are installed (and
// VMware's VDDK in the library directory), then starts nbdkit with
// --foreground --exit-with-parent --readonly, waits until an NBD handshake
// on the socket succeeds and keeps the connection. If nbdkit dies, the
// connection is closed at once and every read fails with nbdkit's exit
// status and the tail of its standard error. [Disk.Close] disconnects,
// stops nbdkit (SIGTERM, then SIGKILL after a grace period), waits for it
// and removes the socket directory; a failed Open leaves nothing running.
//
// # The password
//
// The vCenter password never appears on a command line, in a log or in an
// error: nbdkit reads it as password=-FD from a pipe it inherits, which
// this package fills and closes before nbdkit starts (nbdkit reads one
// line and closes its end). [Config.Password] is a secret.String: it prints as "REDACTED".
package vddk
