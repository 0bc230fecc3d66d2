// Package nbd is a client for the Network Block Device protocol, the way the VMA writes disks into the
// OMA's exports (served by nbdkit).
//
// # Connecting
//
// [Dial] connects to nbd://host:port/export or nbd+unix:///export?socket=PATH and runs the fixed-newstyle
// handshake: structured replies, the base:allocation metadata context, and NBD_OPT_GO asking for the
// export's block size constraints, falling back to NBD_OPT_EXPORT_NAME when the server does not know
// NBD_OPT_GO. The transmission flags the server sends decide which commands may be used.
//
// # Many requests on one connection
//
// Every method of [Client] is safe for concurrent use. A call sends its request (sends are serialized),
// then waits for the reply, which one reader goroutine matches to it by cookie. Up to
// [Config].MaxInFlight requests are in flight at once; [Client.InFlight] and [Client.PeakInFlight] show
// how many. Reads and writes larger than the server's maximum block size are split into pieces that are
// all sent before the first reply is awaited.
//
// # Errors
//
// An error the server reports comes back as an [*Error] naming the command, the offset and the NBD
// error; errors.Is(err, nbd.EIO) tests for one. A connection that breaks (or a server that breaks the
// protocol: a wrong cookie, a chunk longer than asked, a structured reply that was not negotiated)
// fails every request in flight with the cause, and every later call; the client must then be closed
// and dialled again. Cancelling a call's context abandons its request: the call returns at once and the
// reply, when it comes, is read and discarded. A context cancelled while the request is still being
// sent closes the connection, since half a request cannot be taken back.
//
// # Fuzzing
//
// The handshake and reply parsers take an io.Reader; FuzzHandshake and FuzzReplies feed them arbitrary
// bytes, and their seed corpus in testdata/fuzz runs with the ordinary tests.
package nbd
