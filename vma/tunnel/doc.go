// Package tunnel is the VMA's SSH connection to the OMA's stock OpenSSH sshd, held in
// process, over which everything between VMA and OMA rides; on a long link, a few more to the
// same sshd carry the bulk.
//
// # Connection
//
// [New] checks a [Config]; [Tunnel.Run] connects with the VMA's ed25519 key (see
// [LoadOrCreateKey]), checks the OMA's host key against a known_hosts file, sends
// keepalive@openssh.com requests to notice a dead peer, and reconnects with backoff until its
// context ends.
//
// # Long links
//
// After each connection is up, the tunnel runs one session command (the key's forced /bin/false
// runs instead): OpenSSH sshd before 10.1 sets TCP_NODELAY only then, and without it the
// channel windows wait behind Nagle's algorithm (Config.NoSession turns it off). Every
// SampleInterval it reads its TCP connection's TCP_INFO and byte counters: [State] shows the
// round trips, rates and which end's buffer held it back, and [Tunnel.MinRTT] tells the link's
// round trip to who sizes the copies' connections. Once the round trip is known it logs whether
// the send buffer holds two round trips of the link (Config.LinkRate); Config.SocketBuffer sets
// the buffers instead of the kernel's autotuning.
//
// # Dialling the OMA
//
// [Tunnel.DialContext] opens a direct-tcpip channel (ssh -L) to an address on the OMA side, such
// as NATS on 127.0.0.1:4222 or an NBD export; while the tunnel is down it waits for it to come
// back, bounded by its context. [Dialer] adapts it to nats.go's SetCustomDialer.
//
// # Several connections
//
// One TCP connection over a long link carries only so much. With Config.Connections above 1
// (or 0, chosen from the round trip time), the tunnel also keeps data connections to the same
// sshd with the same key, started once the primary is up, each with its keepalives and its
// reconnect loop (pool.go). Dials to Config.PrimaryAddrs (the bus) stay on the primary; the
// others open their channel on the up data connection with the fewest channels. Losing a data
// connection breaks only its channels: it is no outage. [Tunnel.State] lists each connection.
//
// # The reverse forward
//
// [Tunnel.Listener] is the remote forward (ssh -R, streamlocal-forward@openssh.com) of the Unix
// socket Config.RemoteListen on the OMA's sshd; the OMA holds the VMA's API port and forwards
// into that socket. It outlives reconnects: the forward is requested again on each connection,
// and Accept only fails once the listener is closed. Each connection reaches Accept only after
// the VMA has answered the OMA's challenge with its SSH key: [Verify] is the OMA's half, which
// tells the VMAs apart (they all log in as one user, and any of them could bind another's
// socket path while that one is down). [RemoveStale] removes a socket an ended session left.
package tunnel
