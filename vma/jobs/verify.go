package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/blockdigest"
	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/vma/copier"
)

// verifyBatchTimeout bounds one verify request: the OMA hashes at most
// blockdigest.MaxBytes for it, and it may wait behind other VMAs' requests.
const verifyBatchTimeout = time.Minute

// busHasher is the copier.Hasher of one disk of a job: it asks the OMA,
// over the bus, for the digests of the blocks of the disk's volume
// (subject.VerifyRequest). While nobody serves that subject (an OMA that
// predates it) for requestTimeout, it answers copier.ErrNoHasher, logged
// once, and the copier reads the disk back instead.
type busHasher struct {
	conn           *bus.Conn
	subject        string
	disk           int32
	requestTimeout time.Duration
	log            *slog.Logger
	warnOnce       sync.Once
}

var _ copier.Hasher = (*busHasher)(nil)

// hasher returns the Hasher of disk key of job t.
func (r *Runner) hasher(t *task, key int32) (*busHasher, error) {
	subj, err := subject.VerifyRequest(r.cfg.Identity.ID, t.id)
	if err != nil {
		return nil, err
	}
	return &busHasher{conn: r.conn, subject: subj, disk: key, requestTimeout: r.cfg.RequestTimeout,
		log: r.log.With("job", t.id, "disk", key)}, nil
}

// Digests implements copier.Hasher.
func (h *busHasher) Digests(ctx context.Context, key []byte, blocks []copier.Area) ([]blockdigest.Sum, error) {
	req := events.VerifyRequest{Disk: h.disk, Key: key, Blocks: make([][2]int64, len(blocks))}
	for i, b := range blocks {
		req.Blocks[i] = [2]int64{b.Offset, b.Length}
	}
	ctx, cancel := context.WithTimeout(ctx, verifyBatchTimeout)
	defer cancel()
	var resp events.VerifyDigests
	for first := time.Now(); ; {
		err := h.conn.Request(ctx, h.subject, req, &resp)
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrNoResponders) {
			return nil, err
		}
		if time.Since(first) >= h.requestTimeout {
			h.warnOnce.Do(func() {
				h.log.Warn("the OMA does not answer verify requests: reading the disk back to verify it", "err", err)
			})
			return nil, fmt.Errorf("%w: %w", copier.ErrNoHasher, err)
		}
		select { // the OMA may be starting, or reloading its accounts
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(resp.Sums) != len(blocks) {
		return nil, fmt.Errorf("the OMA answered %d digests for %d blocks", len(resp.Sums), len(blocks))
	}
	sums := make([]blockdigest.Sum, len(blocks))
	for i, s := range resp.Sums {
		if len(s) != 0 && len(s) != blockdigest.Size {
			return nil, fmt.Errorf("the OMA answered a digest of %d bytes for block %d", len(s), i)
		}
		copy(sums[i][:], s)
	}
	return sums, nil
}
