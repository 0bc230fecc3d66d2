package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/godwit/godwit/blockdigest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/fault"
)

// DefaultVerifyParallel is how many verify requests the OMA hashes at once
// when Config.VerifyParallel is zero.
const DefaultVerifyParallel = 2

// verifyTimeout bounds the hashing of one verify request: the VMA waits a
// minute for an answer.
const verifyTimeout = time.Minute

// Limiter bounds the bytes per second read to answer verify requests;
// *copier.Limiter's Wait has this form.
type Limiter interface {
	// Wait returns once n bytes may be read, or ctx's error.
	Wait(ctx context.Context, n int) error
}

// Verify answers a VMA's verify request for one of its jobs (subject
// godwit.verify.request.<vma>.<job>): the blockdigest Sums of the blocks it
// names of one disk's volume, hashed from the OMA's disk. The volume is the
// one the OMA's store holds for the job's disk; the request names only the
// disk's key. As with Allocation, another VMA's job is answered as an
// unknown one. Blocks must be in offset order, not overlap, lie within the
// disk's capacity and number at most blockdigest.MaxBlocks (MaxBytes in
// all). At most Config.VerifyParallel requests are hashed at once, each
// through Config.VerifyLimiter.
func (m *Manager) Verify(ctx context.Context, subj string, data []byte) (any, error) {
	vmaID, jobID, err := subject.ParseVerifyRequest(subj)
	if err != nil {
		return nil, err
	}
	j, err := m.activeJobOf(vmaID, jobID)
	if err != nil {
		return nil, err
	}
	var req events.VerifyRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fault.Errorf(fault.Invalid, "", "verify request: %v", err)
	}
	path, capacity := "", int64(0)
	for _, d := range j.Disks {
		if d.Key == req.Disk {
			path, capacity = d.Volume, d.CapacityBytes
		}
	}
	if path == "" {
		return nil, fault.Errorf(fault.NotFound, "disk", "job %s has no disk %d", jobID, req.Disk)
	}
	blocks, err := verifyBlocks(req, capacity)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	select {
	case m.hashing <- struct{}{}:
		defer func() { <-m.hashing }()
	case <-ctx.Done():
		return nil, fault.Errorf(fault.Unavailable, "", "verify: %d requests are being hashed: %v", cap(m.hashing), ctx.Err())
	}
	f, err := os.Open(path)
	if err != nil {
		m.log.Error("verify: open volume", "job", jobID, "disk", req.Disk, "err", err)
		return nil, fmt.Errorf("verify disk %d: cannot open its volume", req.Disk)
	}
	defer f.Close()
	var cfg blockdigest.FileConfig
	if m.cfg.VerifyLimiter != nil {
		cfg.Wait = m.cfg.VerifyLimiter.Wait
	}
	sums, err := blockdigest.File(ctx, f, req.Key, blocks, cfg)
	if err != nil {
		m.log.Error("verify: hash volume", "job", jobID, "disk", req.Disk, "err", err)
		return nil, fmt.Errorf("verify disk %d: hash its volume: %w", req.Disk, err)
	}
	out := events.VerifyDigests{Sums: make([][]byte, len(sums))}
	for i, s := range sums {
		if !s.IsZero() {
			out.Sums[i] = s[:]
		}
	}
	return out, nil
}

// verifyBlocks checks the key and blocks of req against a disk of capacity
// bytes.
func verifyBlocks(req events.VerifyRequest, capacity int64) ([]blockdigest.Block, error) {
	if len(req.Key) != blockdigest.KeySize {
		return nil, fault.Errorf(fault.Invalid, "key", "verify request: key of %d bytes, want %d", len(req.Key), blockdigest.KeySize)
	}
	if n := len(req.Blocks); n == 0 || n > blockdigest.MaxBlocks {
		return nil, fault.Errorf(fault.Invalid, "blocks", "verify request: %d blocks, want 1 to %d", n, blockdigest.MaxBlocks)
	}
	blocks := make([]blockdigest.Block, len(req.Blocks))
	var total, end int64
	for i, b := range req.Blocks {
		off, n := b[0], b[1]
		if off < end || n <= 0 || n > capacity || off > capacity-n {
			return nil, fault.Errorf(fault.Invalid, "blocks", "verify request: block %d [%d, +%d) is not in order within the disk's %d bytes", i, off, n, capacity)
		}
		total += n
		if total > blockdigest.MaxBytes {
			return nil, fault.Errorf(fault.Invalid, "blocks", "verify request: more than %d bytes", blockdigest.MaxBytes)
		}
		blocks[i] = blockdigest.Block{Offset: off, Length: n}
		end = off + n
	}
	return blocks, nil
}
