package exports

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// NBD handshake constants (NetworkBlockDevice/nbd doc/proto.md).
const (
	nbdMagic       = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic    = 0x49484156454f5054 // "IHAVEOPT"
	nbdReplyMagic  = 0x0003e889045565a9
	nbdFlagFixed   = 1 << 0 // NBD_FLAG_FIXED_NEWSTYLE (server) and NBD_FLAG_C_FIXED_NEWSTYLE (client)
	nbdFlagNoZero  = 1 << 1 // NBD_FLAG_NO_ZEROES and NBD_FLAG_C_NO_ZEROES
	nbdOptAbort    = 2
	nbdOptInfo     = 6
	nbdRepAck      = 1
	nbdRepInfo     = 3
	nbdRepErrBit   = 1 << 31
	nbdInfoExport  = 0
	maxReplyLength = 64 << 10
)

// ErrNoExport is returned by Probe when the server answered the handshake
// but refused the export name.
var ErrNoExport = errors.New("NBD server has no such export")

// Probe proves that an NBD server at addr serves the export name: it does
// the fixed-newstyle handshake, asks NBD_OPT_INFO for the export, reads its
// size and ends with NBD_OPT_ABORT. A listener that is not an NBD server,
// or that does not know the name (ErrNoExport), fails. Without a deadline
// on ctx the probe gives up after 2 seconds.
func Probe(ctx context.Context, addr, name string) (size int64, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("probe %s: %w", addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, fmt.Errorf("probe %s: %w", addr, err)
	}
	size, err = handshake(conn, name)
	if err != nil {
		return 0, fmt.Errorf("probe %s: %w", addr, err)
	}
	return size, nil
}

// handshake runs the option haggling of Probe over rw.
func handshake(rw io.ReadWriter, name string) (int64, error) {
	var greet struct {
		Magic, OptMagic uint64
		Flags           uint16
	}
	if err := binary.Read(rw, binary.BigEndian, &greet); err != nil {
		return 0, fmt.Errorf("read greeting: %w", err)
	}
	if greet.Magic != nbdMagic || greet.OptMagic != nbdOptMagic {
		return 0, fmt.Errorf("not a newstyle NBD server (magic %#x %#x)", greet.Magic, greet.OptMagic)
	}
	if greet.Flags&nbdFlagFixed == 0 {
		return 0, errors.New("NBD server does not speak fixed newstyle")
	}
	client := uint32(nbdFlagFixed)
	if greet.Flags&nbdFlagNoZero != 0 {
		client |= nbdFlagNoZero
	}
	// Client flags, then NBD_OPT_INFO: name length, name, no info requests.
	msg := binary.BigEndian.AppendUint32(nil, client)
	msg = binary.BigEndian.AppendUint64(msg, nbdOptMagic)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptInfo)
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(name)+2))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(name)))
	msg = append(msg, name...)
	msg = binary.BigEndian.AppendUint16(msg, 0)
	if _, err := rw.Write(msg); err != nil {
		return 0, fmt.Errorf("send NBD_OPT_INFO: %w", err)
	}
	size := int64(-1)
	for {
		var rep struct {
			Magic  uint64
			Option uint32
			Type   uint32
			Length uint32
		}
		if err := binary.Read(rw, binary.BigEndian, &rep); err != nil {
			return 0, fmt.Errorf("read option reply: %w", err)
		}
		if rep.Magic != nbdReplyMagic || rep.Option != nbdOptInfo {
			return 0, fmt.Errorf("bad option reply (magic %#x, option %d)", rep.Magic, rep.Option)
		}
		if rep.Length > maxReplyLength {
			return 0, fmt.Errorf("option reply of %d bytes", rep.Length)
		}
		data := make([]byte, rep.Length)
		if _, err := io.ReadFull(rw, data); err != nil {
			return 0, fmt.Errorf("read option reply: %w", err)
		}
		switch {
		case rep.Type&nbdRepErrBit != 0:
			return 0, fmt.Errorf("%w %q (error %#x: %s)", ErrNoExport, name, rep.Type, data)
		case rep.Type == nbdRepInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == nbdInfoExport:
			size = int64(binary.BigEndian.Uint64(data[2:]))
		case rep.Type == nbdRepAck:
			if size < 0 {
				return 0, errors.New("NBD server acknowledged NBD_OPT_INFO without the export's size")
			}
			abort := binary.BigEndian.AppendUint64(nil, nbdOptMagic)
			abort = binary.BigEndian.AppendUint32(abort, nbdOptAbort)
			abort = binary.BigEndian.AppendUint32(abort, 0)
			_, _ = rw.Write(abort) // the answer is known; the server may close at once
			return size, nil
		}
	}
}
