// Package blockdigest computes the digests that check a copy block by
// block: the VMA computes them from the bytes it reads from the source, the
// OMA from what its volume holds, and the two lists are compared.
//
// # Digest
//
// A block's [Sum] is HMAC-SHA-256 of its bytes under a key drawn for one
// copy ([NewKey]), truncated to 128 bits. A block whose bytes are all zeros
// has the zero Sum instead (it reads as zeros whether it is a hole, zeros
// written or never written), and a block with data never has it. The key
// makes the digests useless for anything but the copy they were made for:
// they say nothing about the data to whoever sees them.
//
// A [Hash] takes a block's bytes in pieces of any size, so the two sides
// need not cut a block the same way. [File] computes the Sums of blocks of a
// file (or block device), skipping its holes.
//
// This package uses only the standard library.
package blockdigest
