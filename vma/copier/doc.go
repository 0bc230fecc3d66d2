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
// # Digest
//
// With Config.Hash or Config.Verify, Result.Digest is the SHA-256 of the
// bytes copied in this run, concatenated in offset order: for each area in
// the order given, the source's bytes of [max(Offset, ResumeFrom),
// Offset+Length), nothing for an area wholly below ResumeFrom. Zero extents
// that were never read count as the zeros they read as. A verifier
// reproduces it by reading the same ranges of the destination in the same
// order into one SHA-256. Chunks are hashed by one goroutine as the
// checkpoint passes them, so the digest does not depend on Depth,
// RequestSize or the order requests complete in.
//
// # Verify
//
// With Config.Verify, Copy checks every byte it copied in this run against
// what it read from the source; Result.Verified says all matched.
//
// Nothing is buffered for it: the ranges copied are cut into blocks, from
// the start of each, of the smallest multiple of RequestSize that is at
// least 1 MiB, and while copying the collector keeps one 16-byte digest per
// block (a blockdigest.Sum: HMAC-SHA-256 under a key drawn for this Copy,
// truncated; a block of zeros has the zero Sum). That is 32 MiB for 2 TiB.
//
// With Config.Hasher (the job runner's asks the OMA over the bus), the
// destination's digests are computed where it lies, while the copy goes
// on: as soon as every block of a batch (Config.HashBatch blocks, 64 by
// default, at most blockdigest.MaxBlocks and MaxBytes) is written and
// acknowledged, Copy sends the key and the blocks, two calls in flight,
// and compares the answers in offset order; only the last batch waits for
// the end of the copy. A mismatch stops the copy at once. Nothing is read
// back; Result.Hashed says so. A Hasher that answers ErrNoHasher for the
// first blocks (an OMA that does not serve verify requests) leaves the
// check to the read-back below, after the flush.
//
// Without a Hasher the destination must also be a Source (ReadAt), or Copy
// refuses with ErrConfig before touching anything, and is read back:
// pipelined as the copy is, Depth blocks in flight, each read in chunks of
// at most RequestSize into the copy's buffers, through the Limiter. Either
// way a block of zeros must read as zeros, whether it was written with
// WriteZeroes or skipped with TargetIsZero: a target that was not in fact
// zero fails. Progress.Verified counts the bytes checked.
//
// A block that differs fails the copy with a *VerifyError naming the first
// such block in offset order ("verify: bytes at offset N (+len) differ
// from the source"), which matches ErrMismatch; the Result's Checkpoint is
// then that block's offset, below which everything matched. A read that
// fails is not a mismatch: it is an *Error with Op "verify read" (or
// "verify digests", a Hasher's error).
//
// Only this run's bytes are verified, as only they are in the Digest: the
// bytes below ResumeFrom were copied, and verified or not, by an earlier
// run whose source bytes this run never saw. A caller that wants a resumed
// copy verified whole copies it again without ResumeFrom.
//
// # Compare
//
// Compare tells whether two Comparables (a Source with Extents) hold the
// same bytes: it reads from both only the union of the areas either
// side's extents call data, Depth chunks at a time, and names the first
// byte that differs in a *DiffError (ErrDiffer). Holes are never read, so
// a huge sparse image compares in the time its data takes.
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
