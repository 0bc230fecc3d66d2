// Package tunnels is the OMA's end of the VMAs' API forwards.
//
// # Why the OMA holds the ports
//
// Each VMA's API is reached on the OMA at 127.0.0.1:<api_port> (9081 for the first VMA). When
// that port was the VMA's SSH remote forward, any local user could bind it while the VMA's
// tunnel was down and collect what an operator sends there, a vCenter password included. Now
// the OMA listens on every registered VMA's API port itself, as long as it runs, and the VMA's
// remote forward is a Unix socket, <Dir>/<id>.sock, in a directory only the OMA's user can open
// (the VMAs' SSH sessions run as that user). A [Proxy] forwards each request on the port into
// the socket; while it is absent or refuses, the request gets 503 "VMA vma-1 not connected".
//
// # Telling the VMAs apart
//
// All VMAs log in as the same user, and OpenSSH has no permitlisten for socket paths: one
// VMA's key could bind another VMA's socket while that one is down. So before anything is sent
// on a new connection to a socket the proxy checks that the VMA there holds the SSH key
// registered for that VMA (vma/tunnel's Verify: a random challenge signed with the key); a
// socket that fails is removed, logged, and its requests answered 503. sshd is configured never
// to replace an existing socket (StreamLocalBindUnlink no), so a live VMA's socket cannot be
// taken either; the proxy removes the sockets ended sessions leave behind.
//
// What remains: a VMA's key can create sockets (and only sockets, never replacing a file)
// wherever the OMA's user may write, and can hold another VMA's socket name while that VMA is
// down, keeping its API unreachable (denial of service, logged) but learning nothing.
package tunnels
