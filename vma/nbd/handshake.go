package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// export is what the handshake learnt about the export.
type export struct {
	size       uint64
	flags      uint16 // transmission flags
	structured bool   // structured replies negotiated
	metaID     uint32 // base:allocation context id, valid if hasMeta
	hasMeta    bool
	minBlock   uint32
	prefBlock  uint32
	maxBlock   uint32
	usedGo     bool // false: NBD_OPT_EXPORT_NAME ended the handshake
}

// handshake runs the client's side of the fixed-newstyle handshake for the named export: it reads the
// server's greeting from r, writes options to w and reads their replies, and returns when transmission
// may begin. It never reads more than the protocol's fields (an option reply's payload at most
// maxOptReply bytes), so anything left in r belongs to the transmission phase. Errors wrap ErrProtocol
// when the server breaks the protocol.
func handshake(r io.Reader, w io.Writer, name string) (export, error) {
	var ex export
	if len(name) > 4096 {
		return ex, fmt.Errorf("export name of %d bytes: longer than 4096", len(name))
	}
	var hello [18]byte
	if _, err := io.ReadFull(r, hello[:16]); err != nil {
		return ex, fmt.Errorf("read greeting: %w", err)
	}
	if binary.BigEndian.Uint64(hello[:8]) != nbdMagic {
		return ex, protoErr("greeting magic %#x, not NBDMAGIC", binary.BigEndian.Uint64(hello[:8]))
	}
	if m := binary.BigEndian.Uint64(hello[8:16]); m != optMagic {
		if m == oldstyleMagic {
			return ex, protoErr("oldstyle server: only newstyle is supported")
		}
		return ex, protoErr("greeting magic %#x, not IHAVEOPT", m)
	}
	if _, err := io.ReadFull(r, hello[16:18]); err != nil {
		return ex, fmt.Errorf("read handshake flags: %w", err)
	}
	hflags := binary.BigEndian.Uint16(hello[16:18])
	var cflags uint32
	if hflags&flagFixedNewstyle != 0 {
		cflags |= flagCFixedNewstyle
	}
	noZeroes := hflags&flagNoZeroes != 0
	if noZeroes {
		cflags |= flagCNoZeroes
	}
	if err := binary.Write(w, binary.BigEndian, cflags); err != nil {
		return ex, fmt.Errorf("write client flags: %w", err)
	}
	if hflags&flagFixedNewstyle == 0 {
		// Plain newstyle: NBD_OPT_EXPORT_NAME is the only option there is.
		return exportName(r, w, name, noZeroes)
	}

	h := optConn{r: r, w: w}
	// Structured replies.
	typ, _, err := h.roundTrip(optStructuredRply, nil)
	if err != nil {
		return ex, err
	}
	switch {
	case typ == repAck:
		ex.structured = true
	case typ&repErrBit == 0:
		return ex, protoErr("reply %d to NBD_OPT_STRUCTURED_REPLY", typ)
	}

	// base:allocation, for block status.
	if ex.structured {
		data := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		data = append(data, name...)
		data = binary.BigEndian.AppendUint32(data, 1)
		data = binary.BigEndian.AppendUint32(data, uint32(len(metaBaseAllocation)))
		data = append(data, metaBaseAllocation...)
		if err := h.send(optSetMetaContext, data); err != nil {
			return ex, err
		}
		for {
			typ, payload, err := h.reply(optSetMetaContext)
			if err != nil {
				return ex, err
			}
			if typ == repMetaContext {
				if len(payload) < 4 {
					return ex, protoErr("meta context reply of %d bytes", len(payload))
				}
				if string(payload[4:]) == metaBaseAllocation {
					ex.metaID, ex.hasMeta = binary.BigEndian.Uint32(payload), true
				}
				continue
			}
			if typ == repAck {
				break
			}
			if typ&repErrBit != 0 {
				ex.hasMeta = false // no contexts: block status is not offered
				break
			}
			return ex, protoErr("reply %d to NBD_OPT_SET_META_CONTEXT", typ)
		}
	}

	// NBD_OPT_GO asking for the block size constraints.
	data := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	data = append(data, name...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := h.send(optGo, data); err != nil {
		return ex, err
	}
	haveExport := false
	for {
		typ, payload, err := h.reply(optGo)
		if err != nil {
			return ex, err
		}
		switch {
		case typ == repInfo:
			if len(payload) < 2 {
				return ex, protoErr("info reply of %d bytes", len(payload))
			}
			switch binary.BigEndian.Uint16(payload) {
			case infoExport:
				if len(payload) != 12 {
					return ex, protoErr("NBD_INFO_EXPORT of %d bytes, want 12", len(payload))
				}
				ex.size = binary.BigEndian.Uint64(payload[2:])
				ex.flags = binary.BigEndian.Uint16(payload[10:])
				haveExport = true
			case infoBlockSize:
				if len(payload) != 14 {
					return ex, protoErr("NBD_INFO_BLOCK_SIZE of %d bytes, want 14", len(payload))
				}
				ex.minBlock = binary.BigEndian.Uint32(payload[2:])
				ex.prefBlock = binary.BigEndian.Uint32(payload[6:])
				ex.maxBlock = binary.BigEndian.Uint32(payload[10:])
				if err := checkBlockSizes(ex.minBlock, ex.prefBlock, ex.maxBlock); err != nil {
					return ex, err
				}
			}
		case typ == repAck:
			if !haveExport {
				return ex, protoErr("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			ex.usedGo = true
			return ex.withDefaults(), nil
		case typ == repErrUnsup:
			// An old server: NBD_OPT_EXPORT_NAME ends the handshake the old way. Structured replies and
			// the meta context it accepted stay negotiated.
			old, err := exportName(r, w, name, noZeroes)
			old.structured, old.metaID, old.hasMeta = ex.structured, ex.metaID, ex.hasMeta
			return old, err
		case typ&repErrBit != 0:
			return ex, fmt.Errorf("open export %q: server refused: %s", name, repErrString(typ, payload))
		default:
			return ex, protoErr("reply %d to NBD_OPT_GO", typ)
		}
	}
}

// exportName ends the handshake with NBD_OPT_EXPORT_NAME; the server closes the connection if it
// refuses.
func exportName(r io.Reader, w io.Writer, name string, noZeroes bool) (export, error) {
	var ex export
	if err := (&optConn{r: r, w: w}).send(optExportName, []byte(name)); err != nil {
		return ex, err
	}
	n := 10
	if !noZeroes {
		n += 124
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			return ex, fmt.Errorf("open export %q: server closed the connection (no such export?): %w", name, err)
		}
		return ex, fmt.Errorf("read export info: %w", err)
	}
	ex.size = binary.BigEndian.Uint64(buf)
	ex.flags = binary.BigEndian.Uint16(buf[8:])
	return ex.withDefaults(), nil
}

// withDefaults fills in the block sizes the server did not send.
func (ex export) withDefaults() export {
	if ex.minBlock == 0 {
		ex.minBlock, ex.prefBlock, ex.maxBlock = defaultMinBlock, defaultPrefBlock, defaultMaxBlock
	}
	return ex
}

// checkBlockSizes holds NBD_INFO_BLOCK_SIZE to the spec's constraints: powers of two, min at most 64 KiB,
// preferred at least min, max a multiple of min (or 0xffffffff) and at least preferred's floor of min.
func checkBlockSizes(minB, pref, maxB uint32) error {
	switch {
	case minB == 0 || bits.OnesCount32(minB) != 1 || minB > 64<<10:
		return protoErr("minimum block size %d", minB)
	case pref < minB || bits.OnesCount32(pref) != 1:
		return protoErr("preferred block size %d (minimum %d)", pref, minB)
	case maxB < minB || (maxB != 0xffffffff && maxB%minB != 0):
		return protoErr("maximum block size %d (minimum %d)", maxB, minB)
	}
	return nil
}

// repErrString describes an option error reply and its message.
func repErrString(typ uint32, msg []byte) string {
	names := map[uint32]string{1: "unsupported", 2: "policy", 3: "invalid", 4: "platform", 5: "TLS required",
		6: "unknown export", 7: "shutting down", 8: "block size required", 9: "too big"}
	s, ok := names[typ&^repErrBit]
	if !ok {
		s = "error " + itoa(uint64(typ&^repErrBit))
	}
	if len(msg) > 0 {
		s += fmt.Sprintf(" (%q)", msg)
	}
	return s
}

// optConn sends options and reads their replies.
type optConn struct {
	r io.Reader
	w io.Writer
}

func (h *optConn) send(opt uint32, data []byte) error {
	buf := binary.BigEndian.AppendUint64(make([]byte, 0, 16+len(data)), optMagic)
	buf = binary.BigEndian.AppendUint32(buf, opt)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	buf = append(buf, data...)
	if _, err := h.w.Write(buf); err != nil {
		return fmt.Errorf("send option %d: %w", opt, err)
	}
	return nil
}

// reply reads one option reply to opt: its type and payload.
func (h *optConn) reply(opt uint32) (uint32, []byte, error) {
	var hdr [20]byte
	if _, err := io.ReadFull(h.r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read reply to option %d: %w", opt, err)
	}
	if m := binary.BigEndian.Uint64(hdr[:]); m != optReplyMagic {
		return 0, nil, protoErr("option reply magic %#x", m)
	}
	if got := binary.BigEndian.Uint32(hdr[8:]); got != opt {
		return 0, nil, protoErr("reply to option %d while %d was asked", got, opt)
	}
	typ, n := binary.BigEndian.Uint32(hdr[12:]), binary.BigEndian.Uint32(hdr[16:])
	if n > maxOptReply {
		return 0, nil, protoErr("option reply of %d bytes", n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(h.r, payload); err != nil {
		return 0, nil, fmt.Errorf("read reply to option %d: %w", opt, err)
	}
	return typ, payload, nil
}

// roundTrip sends an option and reads its single reply.
func (h *optConn) roundTrip(opt uint32, data []byte) (uint32, []byte, error) {
	if err := h.send(opt, data); err != nil {
		return 0, nil, err
	}
	return h.reply(opt)
}
