// Package plans runs migration plans: the VMs of one registered vCenter,
// copied in waves and then kept fresh by incremental syncs on a schedule,
// checked by a preflight before the first byte.
//
// # Objects
//
// A plan (store.Plan) names its vCenter, its schedule (an interval or a
// cron expression, inside an optional daily window; package
// oma/schedule), its waves and how its jobs run (verify, on_cbt_reset).
// Each VM of a plan is a store.PlanVM of its own, pinned at creation to
// its managed object id, instance UUID, VMA and vCenter host, as jobs are.
// A VM is in one plan at most.
//
// # States
//
// A VM moves pending -> copying (its initial copy) -> synced -> syncing
// (an incremental) -> synced ..., or to failed with the reason and the
// job. A failed VM is retried by the next scheduled sync, or at once by
// Retry; three failures in a row pause it (state paused) until Retry.
//
// # The schedule
//
// Run ticks every Config.Poll. A tick first applies the states of the
// plans' jobs, then, for every plan not paused whose next due time has
// come, marks its synced and failed VMs due and stores the following due
// time in the same transaction: a restart neither loses a sync (a due
// time missed while the OMA was down runs once at start) nor doubles one.
// Last it starts jobs, inside the schedule's window only: initial copies
// of pending VMs whose wave is open (every VM of the waves before it has
// a completed copy), and incrementals (initial when there is no replica
// yet) of due VMs, at most the plan's limits.max_concurrent (else
// Config.MaxActive) jobs of a plan at once. A job
// is started with the vCenter's registered password, sealed to its VMA as
// /start does.
//
// # Events
//
// Every change is an event on the PLANS stream (godwit.plan.>), written to
// the outbox in the transaction that makes the change: plan created and
// changed, VM state changed, sync scheduled, sync done.
package plans
