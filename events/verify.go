package events

// VerifyRequest is a VMA's request to the OMA (on subject.VerifyRequest)
// for the digests of blocks of one disk of a job, computed from what the
// OMA's volume holds (package blockdigest). It is a request/reply message,
// not an event; it is never stored.
type VerifyRequest struct {
	// Disk is the disk's key in the job.
	Disk int32 `json:"disk"`
	// Key is the digest key the VMA drew for this copy (32 bytes). It
	// protects nothing lasting: it only keys this copy's digests.
	Key []byte `json:"key"`
	// Blocks are the blocks to hash, [offset, length] each, in offset
	// order, not overlapping, within the disk's capacity.
	Blocks [][2]int64 `json:"blocks"`
}

// VerifyDigests is the OMA's reply to a VerifyRequest: one digest per
// block, in order, 16 bytes each, or empty for a block that reads as zeros.
type VerifyDigests struct {
	Sums [][]byte `json:"sums"`
}
