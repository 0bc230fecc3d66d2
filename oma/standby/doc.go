// Package standby lets a second OMA take over from the active one, on a
// NATS cluster, without two of them ever acting at once.
//
//   - A Lease in a replicated key-value bucket names the active OMA. It
//     renews it every second; another OMA takes it only once it has seen no
//     renewal for the lease's TTL, and only with a revision check, so that
//     of two contenders one wins. An active OMA that cannot renew for
//     nearly a TTL stops acting before anyone may take over.
//   - The active OMA's store journals every change (oma/store); a Shipper
//     copies the journal into a replicated key-value bucket, and a write
//     returns only once its change is there (or after a bound, logged), so
//     that nothing the OMA acted on is lost with it.
//   - A Follower applies that bucket to a standby's own store, and catches
//     up to its end before the standby takes over: the standby starts from
//     the state the active OMA left, as an OMA restarted on its own store
//     does.
package standby
