// Package bus is godwit's message bus: the OMA's embedded NATS server with
// JetStream, the connections both appliances make to it, and the
// validated, idempotent ways events go through it. Every event is a
// CloudEvents envelope (package events) on a subject built by package
// events/subject and checked against its JSON Schema (package schema) on
// the way out and on the way in.
//
// # The server
//
// [StartServer] runs nats-server in the OMA's process, with a file store,
// listening on loopback unless told otherwise, and returns once it accepts
// clients; [Server.Shutdown] stops it. The OMA connects in-process with
// [Server.Connect] as an internal user whose key never leaves memory.
// Everyone else connects with [Connect] and an NKey ([ClientConfig]),
// possibly through a dialer such as the VMA's SSH tunnel, and reconnects
// without giving up, with exponential backoff and jitter, reporting each
// change of [State].
//
// # Streams
//
// [Conn.EnsureStreams] creates the streams, all with limits retention (an
// age and a size cap, [StreamLimits]) and a duplicate window:
//
//	DISCOVERY  discover requests, queued for each VMA
//	INVENTORY  their results, the VMs each VMA found (in pages when large)
//	COMMANDS   replicate commands and cancels, queued for each VMA
//	PROGRESS   progress and replication status from the VMAs
//	JOBS       the job lifecycle, from the OMA
//	PRESENCE   VMA heartbeats, the last one per VMA
//	TUNNEL     outages of the VMAs' SSH connections
//	ALERTS     the OMA's alerts, such as a stream near its limit
//
// The queue streams (DISCOVERY, COMMANDS) hold a bounded share for each
// VMA ([QueueShare]), so no VMA can make them drop or refuse another's
// messages; [Conn.WatchStreams] alerts when a stream nears a limit.
//
// so that a consumer that was away, an operator's nats CLI or a new
// service can replay what happened. [Conn.Publish] wraps a payload in an
// envelope, validates it and publishes it with the event id as
// Nats-Msg-Id: a retry of the same event ([Conn.PublishEvent]) is stored
// once. A [Publisher] keeps a bounded window of events unacknowledged and
// sends each again until stored, in order: what a VMA's progress goes
// through, so that a replicated stream's round trip is paid per window.
//
// # Consumers
//
// Readers use durable pull consumers with explicit acks: [OMADurable] for
// the OMA on every stream it reads, [VMADurable] for a VMA on its own
// commands and discover requests ([Conn.EnsureVMAConsumers]), so that a
// command sent while a VMA is away waits for it. [Conn.Consume] hands one
// event at a time to a [Handler], [Conn.ConsumeBatch] a batch to a
// [BatchHandler] (one bbolt transaction and one fsync per batch). Both
// check every message (schema, and that its payload belongs on the subject
// it came on, so a VMA cannot speak for another), terminate invalid ones,
// tell JetStream that a long handler is still at work, ack after the
// handler returns, nak a failure with a growing delay and terminate an
// error that wraps [ErrPoison]. Handlers must be idempotent: a message may
// come again after a crash or a lost ack, and must then change nothing.
//
// Live subscriptions serve what needs no history: [Conn.Watch] waits for
// the answer to an event about to be published ([Conn.Discover] uses it),
// and [Conn.Request] and [Conn.Serve] are request and reply (the export a
// VMA's job is given), answered only into the requester's own inbox.
//
// # Access
//
// [Access] lists who may connect besides the OMA, each by NKey public key,
// and [Server.SetAccess] changes it without a restart. The OMA, observers
// and admins are in account GODWIT, the only one with JetStream. Each VMA
// is in an account of its own, VMA_<id>, without JetStream, which imports
// from GODWIT as services only the subjects carrying its id, its export
// requests and discover submissions, and the pulls and acks of its own
// durables (read with plain requests: [ClientConfig] Confined). The server
// rewrites the reply subject of every request across an import, so no
// reply a VMA picks can reach the JetStream API; it gets replies only on
// its own inbox prefix. An observer reads: it subscribes
// to godwit.> live and replays streams only through [ObserverAPIPrefix],
// whose gate forwards reads and refuses whatever would publish, delete,
// create a durable or deliver anywhere but its inbox. An admin may do what
// the OMA may, for operators' tools, never for a VMA.
//
// # Cluster
//
// An embedded server can be one node of a JetStream cluster
// ([ServerConfig] Cluster: routes with a password and mutual TLS), every
// node with the same internal key ([ServerConfig] Seed) so that the OMA
// may use any. The OMA shares who may connect through the replicated
// bucket [AccessBucket] ([Conn.ShareAccess]); every node applies it
// ([Server.FollowAccess]). Streams are replicated as [StreamLimits]
// Replicas says.
//
// Test helpers that start real servers, clusters and connections are in
// bus/bustest.
package bus
