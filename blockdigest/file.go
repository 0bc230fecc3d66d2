package blockdigest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
)

// lseek's whence values that find data and holes (Linux).
const (
	seekData = 3
	seekHole = 4
)

// FileConfig configures File. Its zero value works.
type FileConfig struct {
	// BufferSize is the largest read, in bytes; 0 means 1 MiB.
	BufferSize int
	// Wait, if not nil, is called before n bytes of data (not holes) are
	// read: a rate limit. Its error ends File.
	Wait func(ctx context.Context, n int) error
}

// File returns the Sum of each block of f under key. Blocks may come in
// any order. Holes (found with SEEK_DATA and SEEK_HOLE, where f supports
// them: not a block device) are not read, and bytes past f's end read as
// zeros. It returns ctx's error when ctx ends first, or the read's.
func File(ctx context.Context, f *os.File, key []byte, blocks []Block, cfg FileConfig) ([]Sum, error) {
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = 1 << 20
	}
	r := fileReader{ctx: ctx, f: f, cfg: cfg, holes: true, h: New(key)}
	sums := make([]Sum, len(blocks))
	for i, b := range blocks {
		if b.Offset < 0 || b.Length < 0 {
			return nil, fmt.Errorf("block %d [%d, +%d): negative", i, b.Offset, b.Length)
		}
		if err := r.block(b); err != nil {
			return nil, fmt.Errorf("block at %d (+%d): %w", b.Offset, b.Length, err)
		}
		sums[i] = r.h.Sum()
	}
	return sums, nil
}

type fileReader struct {
	ctx   context.Context
	f     *os.File
	cfg   FileConfig
	holes bool // f answers SEEK_DATA/SEEK_HOLE
	h     *Hash
	buf   []byte
	// seen is what the last seeks found: from seen.at on, no data before
	// seen.data, and data in [seen.data, seen.hole) (both math.MaxInt64 when
	// there is no data after seen.at). On tmpfs SEEK_HOLE walks every page
	// up to the hole, the end of a file with no holes: seeking again for
	// each block made hashing quadratic in the file's size.
	seen struct{ at, data, hole int64 }
}

// block hashes b into r.h: its holes as zeros, its data read.
func (r *fileReader) block(b Block) error {
	for off, end := b.Offset, b.End(); off < end; {
		if err := r.ctx.Err(); err != nil {
			return context.Cause(r.ctx)
		}
		data, hole, err := r.nextData(off, end)
		if err != nil {
			return err
		}
		r.h.WriteZeros(data - off)
		if err := r.read(data, hole); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// nextData returns the first stretch of data [data, hole) at or after off,
// clipped to end; data == hole == end when there is none.
func (r *fileReader) nextData(off, end int64) (data, hole int64, err error) {
	if !r.holes {
		return off, end, nil
	}
	if s := r.seen; s.hole > 0 && off >= s.at && off < s.hole {
		data = max(off, s.data)
		return min(data, end), min(s.hole, end), nil
	}
	data, err = r.f.Seek(off, seekData)
	switch {
	case errors.Is(err, syscall.ENXIO): // no data from off to the end of the file
		r.seen.at, r.seen.data, r.seen.hole = off, math.MaxInt64, math.MaxInt64
		return end, end, nil
	case errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP): // no hole support
		r.holes = false
		return off, end, nil
	case err != nil:
		return 0, 0, fmt.Errorf("seek data at %d: %w", off, err)
	}
	hole, err = r.f.Seek(data, seekHole)
	if err != nil {
		return 0, 0, fmt.Errorf("seek hole at %d: %w", data, err)
	}
	r.seen.at, r.seen.data, r.seen.hole = off, data, hole
	return min(data, end), min(hole, end), nil
}

// read hashes the bytes [off, end) of the file, a buffer at a time.
func (r *fileReader) read(off, end int64) error {
	if r.buf == nil && off < end {
		r.buf = make([]byte, r.cfg.BufferSize)
	}
	for off < end {
		p := r.buf[:min(int64(len(r.buf)), end-off)]
		if r.cfg.Wait != nil {
			if err := r.cfg.Wait(r.ctx, len(p)); err != nil {
				return err
			}
		}
		n, err := r.f.ReadAt(p, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		r.h.Write(p[:n])
		if n < len(p) { // past the end: zeros
			r.h.WriteZeros(end - off - int64(n))
			return nil
		}
		off += int64(n)
	}
	return nil
}
