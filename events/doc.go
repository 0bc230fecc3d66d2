// Package events defines the messages godwit's appliances exchange over NATS:
// one Go type per payload, the CloudEvents 1.0 envelope that carries them,
// and (in package subject) the subjects they are published on.
//
// # Envelope
//
// Every message is a CloudEvents 1.0 structured-JSON envelope ([Event]) whose
// data is one payload. Types are versioned ("io.godwit.progress.v1"); a
// breaking change is a new type. Each payload has a JSON Schema in package
// schema, and producers and consumers validate against it.
//
// # Payloads
//
//	DiscoverRequest    io.godwit.discover.request.v1
//	DiscoverResult     io.godwit.discover.result.v1
//	ReplicateCommand   io.godwit.replicate.command.v1
//	ReplicateCancel    io.godwit.replicate.cancel.v1
//	Progress           io.godwit.progress.v1
//	ReplicationStatus  io.godwit.replication.status.v1
//	JobCreated         io.godwit.job.created.v1
//	JobStateChanged    io.godwit.job.state.v1
//	Heartbeat          io.godwit.vma.heartbeat.v1
//
// # Secrets
//
// A password travels only as a [Sealed] box, sealed to the receiving VMA's
// public key; its String and LogValue print "REDACTED".
//
// This package uses only the standard library.
package events
