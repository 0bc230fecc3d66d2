// Package copier copies areas of a Source to the same offsets of a
// Destination: the VMA's copy engine, from a disk being read to an OMA's
// NBD export. It depends on neither: Source, Extents and Destination are
// its own small interfaces, which an NBD client satisfies through a thin
// adapter and package file satisfies with local files.
//
// # Pipeline
//
// One goroutine hands out chunks of at most Config.RequestSize in offset
// order; Config.Depth workers each read one, check every byte for zeros
// (IsZero, never sampled) and write it. Depth requests are thus in flight
// on the source and on the destination. Areas the source's Extents call
// zero are never read. Zero chunks become WriteZeroes (at most
// MaxZeroRequest each), or nothing at all with Config.TargetIsZero. Copy
// flushes the destination at the end and returns nil only after the flush
// is answered.
//
// Memory is bounded by Depth buffers of RequestSize, allocated on first use
// and reused: about Depth × RequestSize, whatever the size copied.
//
// # Checkpoint and resume
//
// Requests complete out of order. Progress.Checkpoint is the offset below
// which every byte of the areas is written and acknowledged; it advances in
// offset order and never past a request still in flight, so a chunk that
// is slow or failed holds it back. A later Copy of the same areas with
// Config.ResumeFrom set to a checkpoint skips everything below it. The
// Checkpoint is durable only once the destination is flushed, which Copy
// does at the end: a caller that saves checkpoints during a copy should
// know that the destination may lose acknowledged but unflushed writes if
// its machine crashes.
//
// # Hash
//
// With Config.Hash, Result.Sum is the SHA-256 of the bytes copied in this
// run, concatenated in offset order: for each area in the order given, the
// source's bytes of [max(Offset, ResumeFrom), Offset+Length), nothing for
// an area wholly below ResumeFrom. Zero extents that were never read count
// as the zeros they read as. A verifier reproduces it by reading the same
// ranges of the destination in the same order into one SHA-256. Chunks are
// hashed by one goroutine as the checkpoint passes them, so the hash does
// not depend on Depth, RequestSize or the order requests complete in.
//
// # Rate limit
//
// A Limiter (token bucket, bytes per second) bounds what is written with
// WriteAt; zero chunks cost nothing. One Limiter may be shared by the
// copies of all the disks of a job, and SetRate changes it while they run.
//
// # Errors
//
// The first error cancels every request in flight; Copy returns it after
// every goroutine it started has ended. A request's error is an *Error:
// "copy at offset 1048576: write: <cause>". Cancelling ctx stops the copy
// promptly, and Copy returns ctx's cause. Copy never flushes after an
// error.
package copier
