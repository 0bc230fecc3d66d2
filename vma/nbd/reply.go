package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
)

// request is one command in flight. The reader goroutine alone writes the reply fields (err, extents,
// the read's coverage); the caller reads them after done is closed. buf, the caller's read buffer, is
// written only while abandoned is false: under mu, or straight from the connection between claim and
// release. A caller that gives up calls abandon and waits for busy, if any, before reusing buf.
type request struct {
	cmd    uint16
	flags  uint16
	off    uint64
	length uint32
	done   chan struct{}

	mu        sync.Mutex
	buf       []byte // NBD_CMD_READ: len(buf) == length
	abandoned bool
	busy      chan struct{} // non-nil while the reader reads into buf; closed when it stops

	err       error    // the server's error (first one), or a short reply
	extents   []Extent // NBD_CMD_BLOCK_STATUS
	gotStatus bool
	filled    []span // NBD_CMD_READ: stretches the reply has covered, sorted, merged
}

// span is a half-open stretch [lo, hi) of a read, relative to its offset.
type span struct{ lo, hi uint64 }

// abandon stops the reply from touching buf: the caller has stopped waiting. If the reader is reading
// into buf right now, abandon returns a channel closed when it stops; buf is not the caller's before.
func (q *request) abandon() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = true
	return q.busy
}

// claim hands the reader buf[rel:rel+n] to read the server's data straight into, or nil if the caller
// gave up. Every claim that returns a buffer is followed by release.
func (q *request) claim(rel, n uint64) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		return nil
	}
	q.busy = make(chan struct{})
	return q.buf[rel : rel+n]
}

// release ends a claim.
func (q *request) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	close(q.busy)
	q.busy = nil
}

// zero clears n bytes of buf at rel (a hole chunk) unless the caller gave up.
func (q *request) zero(rel, n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.abandoned {
		clear(q.buf[rel : rel+n])
	}
}

// cover records [lo, hi) as filled; it fails if that overlaps what was filled before or if the reply
// scattered into more than maxReadPieces stretches.
func (q *request) cover(lo, hi uint64) error {
	i := sort.Search(len(q.filled), func(i int) bool { return q.filled[i].hi > lo })
	if i < len(q.filled) && q.filled[i].lo < hi {
		return protoErr("read chunk [%d, %d) overlaps an earlier one", q.off+lo, q.off+hi)
	}
	switch {
	case i > 0 && q.filled[i-1].hi == lo && i < len(q.filled) && q.filled[i].lo == hi:
		q.filled[i-1].hi = q.filled[i].hi
		q.filled = append(q.filled[:i], q.filled[i+1:]...)
	case i > 0 && q.filled[i-1].hi == lo:
		q.filled[i-1].hi = hi
	case i < len(q.filled) && q.filled[i].lo == hi:
		q.filled[i].lo = lo
	default:
		if len(q.filled) >= maxReadPieces {
			return protoErr("read reply scattered into more than %d pieces", maxReadPieces)
		}
		q.filled = append(q.filled, span{})
		copy(q.filled[i+1:], q.filled[i:])
		q.filled[i] = span{lo, hi}
	}
	return nil
}

// setErr keeps the first error of a reply.
func (q *request) setErr(err error) {
	if q.err == nil {
		q.err = err
	}
}

// serverErr builds the *Error of an error chunk or simple reply.
func (q *request) serverErr(errno uint32, off uint64, msg string) *Error {
	end := q.off + uint64(q.length)
	if off < q.off || off > end {
		off = q.off
	}
	return &Error{Cmd: cmdName(q.cmd), Offset: int64(off), Length: int64(end - off), Errno: errno, Msg: msg}
}

// finish checks a completed reply: a read must have covered all it asked, a block status must have
// sent its extents.
func (q *request) finish() {
	if q.err != nil {
		return
	}
	switch q.cmd {
	case cmdRead:
		if q.length > 0 && (len(q.filled) != 1 || q.filled[0] != span{0, uint64(q.length)}) {
			q.err = fmt.Errorf("nbd read at %d (+%d): %w: reply did not cover the whole range",
				q.off, q.length, ErrProtocol)
		}
	case cmdBlockStatus:
		if !q.gotStatus {
			q.err = fmt.Errorf("nbd block status at %d (+%d): %w: reply without extents",
				q.off, q.length, ErrProtocol)
		}
	}
}

// replyReader parses the transmission phase's replies from r. lookup finds the request in flight with
// a cookie (nil if none). An error from next is fatal to the connection: the stream can no longer be
// trusted. It never allocates more than its scratch buffer, a reply's extents (bounded by maxExtents)
// and the read coverage (bounded by maxReadPieces), whatever the server sends.
type replyReader struct {
	r          io.Reader
	structured bool
	metaID     uint32
	lookup     func(cookie uint64) *request
	scratch    []byte
}

func newReplyReader(r io.Reader, ex export, lookup func(uint64) *request) *replyReader {
	return &replyReader{r: r, structured: ex.structured, metaID: ex.metaID, lookup: lookup,
		scratch: make([]byte, 128<<10)}
}

// next reads one simple reply or structured chunk. It returns the request it belongs to, and done when
// that was the request's last message (then q.err holds the request's outcome).
func (rr *replyReader) next() (q *request, cookie uint64, done bool, err error) {
	hdr := rr.scratch[:20]
	if _, err := io.ReadFull(rr.r, hdr[:4]); err != nil {
		return nil, 0, false, fmt.Errorf("read reply: %w", err)
	}
	switch magic := binary.BigEndian.Uint32(hdr); magic {
	case simpleMagic:
		if _, err := io.ReadFull(rr.r, hdr[4:16]); err != nil {
			return nil, 0, false, fmt.Errorf("read reply: %w", err)
		}
		errno, cookie := binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint64(hdr[8:])
		q := rr.lookup(cookie)
		if q == nil {
			return nil, cookie, false, protoErr("reply to unknown cookie %d", cookie)
		}
		if errno != 0 {
			q.setErr(q.serverErr(errno, q.off, ""))
			return q, cookie, true, nil
		}
		if q.cmd == cmdRead {
			if rr.structured {
				return nil, cookie, false, protoErr("simple reply with data to a read after structured replies")
			}
			if err := rr.readData(q, 0, uint64(q.length)); err != nil {
				return nil, cookie, false, err
			}
		}
		return q, cookie, true, nil
	case structMagic:
		if _, err := io.ReadFull(rr.r, hdr[4:20]); err != nil {
			return nil, 0, false, fmt.Errorf("read reply chunk: %w", err)
		}
		if !rr.structured {
			return nil, 0, false, protoErr("structured reply that was not negotiated")
		}
		flags, typ := binary.BigEndian.Uint16(hdr[4:]), binary.BigEndian.Uint16(hdr[6:])
		cookie, n := binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint32(hdr[16:])
		q := rr.lookup(cookie)
		if q == nil {
			return nil, cookie, false, protoErr("reply chunk to unknown cookie %d", cookie)
		}
		if err := rr.chunk(q, typ, n); err != nil {
			return nil, cookie, false, err
		}
		return q, cookie, flags&replyFlagDone != 0, nil
	default:
		return nil, 0, false, protoErr("reply magic %#x", magic)
	}
}

// chunk reads the n-byte payload of a structured chunk of type typ for q.
func (rr *replyReader) chunk(q *request, typ uint16, n uint32) error {
	switch {
	case typ == replyNone:
		if n != 0 {
			return protoErr("NBD_REPLY_TYPE_NONE with %d bytes", n)
		}
		return nil
	case typ&replyErrBit != 0:
		return rr.errorChunk(q, typ, n)
	case typ == replyOffsetData && q.cmd == cmdRead:
		if n < 9 {
			return protoErr("data chunk of %d bytes", n)
		}
		var b [8]byte
		if _, err := io.ReadFull(rr.r, b[:]); err != nil {
			return fmt.Errorf("read data chunk: %w", err)
		}
		rel, err := q.within(binary.BigEndian.Uint64(b[:]), uint64(n-8))
		if err != nil {
			return err
		}
		return rr.readData(q, rel, uint64(n-8))
	case typ == replyOffsetHole && q.cmd == cmdRead:
		if n != 12 {
			return protoErr("hole chunk of %d bytes", n)
		}
		b := rr.scratch[:12]
		if _, err := io.ReadFull(rr.r, b); err != nil {
			return fmt.Errorf("read hole chunk: %w", err)
		}
		size := binary.BigEndian.Uint32(b[8:])
		if size == 0 {
			return protoErr("hole chunk of size 0")
		}
		rel, err := q.within(binary.BigEndian.Uint64(b), uint64(size))
		if err != nil {
			return err
		}
		q.zero(rel, uint64(size))
		return nil
	case typ == replyBlockStatus && q.cmd == cmdBlockStatus:
		return rr.blockStatus(q, n)
	}
	return protoErr("chunk type %d to %s", typ, cmdName(q.cmd))
}

// within checks that [off, off+n) lies in q's range and was not filled before, and returns off
// relative to q.
func (q *request) within(off, n uint64) (uint64, error) {
	if off < q.off || off-q.off > uint64(q.length) || n > uint64(q.length)-(off-q.off) {
		return 0, protoErr("chunk [%d, +%d) outside the read [%d, +%d)", off, n, q.off, q.length)
	}
	rel := off - q.off
	return rel, q.cover(rel, rel+n)
}

// directPiece bounds how much of a read's data is read straight into the caller's buffer per claim, and
// so how long a caller that gives up may wait for the reader to let go of it.
const directPiece = 1 << 20

// readData reads n bytes of a read's data at rel straight into q's buffer, in pieces of at most
// directPiece; what arrives after the caller gave up is read into scratch and dropped.
func (rr *replyReader) readData(q *request, rel, n uint64) error {
	if !rr.structured {
		if err := q.cover(rel, rel+n); err != nil {
			return err
		}
	}
	for n > 0 {
		b := q.claim(rel, min(n, directPiece))
		claimed := b != nil
		if !claimed {
			b = rr.scratch[:min(n, uint64(len(rr.scratch)))]
		}
		_, err := io.ReadFull(rr.r, b)
		if claimed {
			q.release()
		}
		if err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		rel += uint64(len(b))
		n -= uint64(len(b))
	}
	return nil
}

// errorChunk reads an error chunk: any type with bit 15 set errors the request.
func (rr *replyReader) errorChunk(q *request, typ uint16, n uint32) error {
	if n < 6 || n > maxErrorChunk {
		return protoErr("error chunk of %d bytes", n)
	}
	b := rr.scratch[:n]
	if _, err := io.ReadFull(rr.r, b); err != nil {
		return fmt.Errorf("read error chunk: %w", err)
	}
	errno, msgLen := binary.BigEndian.Uint32(b), uint32(binary.BigEndian.Uint16(b[4:]))
	if msgLen > n-6 {
		return protoErr("error message of %d bytes in a chunk of %d", msgLen, n)
	}
	msg := string(b[6 : 6+msgLen])
	if errno == 0 {
		errno = uint32(EIO) // the spec says nonzero; an error chunk is an error all the same
	}
	off := q.off
	switch typ {
	case replyError:
	case replyErrorOffset:
		if n-6-msgLen != 8 {
			return protoErr("offset error chunk of %d bytes with a %d-byte message", n, msgLen)
		}
		off = binary.BigEndian.Uint64(b[6+msgLen:])
	}
	q.setErr(q.serverErr(errno, off, msg))
	return nil
}

// blockStatus reads a base:allocation chunk of n bytes into q.extents, clipped to q's range.
func (rr *replyReader) blockStatus(q *request, n uint32) error {
	if n < 12 || (n-4)%8 != 0 || (n-4)/8 > maxExtents {
		return protoErr("block status chunk of %d bytes", n)
	}
	if q.gotStatus {
		return protoErr("second block status chunk")
	}
	q.gotStatus = true
	var b [4]byte
	if _, err := io.ReadFull(rr.r, b[:]); err != nil {
		return fmt.Errorf("read block status: %w", err)
	}
	if id := binary.BigEndian.Uint32(b[:]); id != rr.metaID {
		return protoErr("block status for context %d, not base:allocation (%d)", id, rr.metaID)
	}
	pos, end := q.off, q.off+uint64(q.length)
	for left := (n - 4) / 8; left > 0; {
		k := min(left, uint32(len(rr.scratch)/8))
		d := rr.scratch[:8*k]
		if _, err := io.ReadFull(rr.r, d); err != nil {
			return fmt.Errorf("read block status: %w", err)
		}
		left -= k
		for ; len(d) > 0; d = d[8:] {
			length, status := uint64(binary.BigEndian.Uint32(d)), binary.BigEndian.Uint32(d[4:])
			if length == 0 {
				return protoErr("block status extent of length 0")
			}
			if pos >= end {
				continue // beyond what was asked: the spec allows the last to reach further only
			}
			length = min(length, end-pos)
			e := Extent{Offset: int64(pos), Length: int64(length), Hole: status&stateHole != 0, Zero: status&stateZero != 0}
			if k := len(q.extents); k > 0 && q.extents[k-1].Hole == e.Hole && q.extents[k-1].Zero == e.Zero {
				q.extents[k-1].Length += e.Length
			} else {
				q.extents = append(q.extents, e)
			}
			pos += length
		}
	}
	return nil
}
