// Package jobs runs the VMA's replication jobs.
//
// The Runner reads the VMA's durable consumer on the commands stream. A
// replicate command is recorded in the VMA's bbolt (state queued, with the
// vCenter password still sealed to the VMA's key), acked, and run under a
// context of its own; at most Config.MaxJobs run at once and the rest wait
// in the order they came. A cancel command (or the API's cleanup) stops a
// job within a moment: its copies see the context end.
//
// One job, step by step (a failure names its step, and the disk when there
// is one):
//
//	allocation   ask the OMA where each disk goes (export request)
//	login        open the sealed password, log in to vCenter
//	find VM      find the VM by path; it must still be the job's VM
//	snapshot     take snapshot godwit-<job>
//	copy         every disk into its own export, matched by device key,
//	             Config.DiskParallelism disks at once
//	finalize     remove the snapshot, report completed with change ids
//
// The snapshot is removed on every path: success, failure, cancel, and
// after a restart that finds the job unfinished. Progress goes to the bus
// at most once per Config.ProgressInterval and at each phase change.
package jobs
