// Package subject builds every NATS subject godwit uses, in one place.
//
// Subjects are hierarchical and carry the VMA id, so NATS permissions can
// confine each VMA to its own subjects:
//
//	godwit.discover.request.<vma>           discovery asked of a VMA
//	godwit.discover.result.<vma>.<request>  the inventory it found
//	godwit.replicate.command.<vma>          a job for the VMA to run
//	godwit.replicate.cancel.<vma>           a job for the VMA to stop
//	godwit.progress.<vma>.<job>             copy progress
//	godwit.status.<vma>.<job>               replication status
//	godwit.job.created.<vma>.<job>          the OMA created a job
//	godwit.job.state.<vma>.<job>            a job changed state
//	godwit.vma.heartbeat.<vma>              VMA presence
//	godwit.tunnel.<vma>                     an outage of the VMA's SSH connection, once it is back
//	godwit.export.request.<vma>.<job>       export allocation (request/reply)
//
// # Injection
//
// Every id is checked by [ValidID] before it is put in a subject: only
// letters, digits, '-' and '_' are accepted, so an id can never add a token
// ("a.b"), widen a permission ("*", ">") or break the protocol line (" ").
package subject
