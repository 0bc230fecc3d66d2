package nbd

// Protocol constants, from the NBD protocol specification (doc/proto.md in NetworkBlockDevice/nbd).
const (
	nbdMagic       = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic       = 0x49484156454F5054 // "IHAVEOPT"
	oldstyleMagic  = 0x00420281861253
	optReplyMagic  = 0x3e889045565a9
	requestMagic   = 0x25609513
	simpleMagic    = 0x67446698
	structMagic    = 0x668e33ef
	defaultNBDPort = "10809"

	flagFixedNewstyle  = 1 << 0 // handshake flags
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0 // client flags
	flagCNoZeroes      = 1 << 1

	optExportName     = 1
	optAbort          = 2
	optGo             = 7
	optStructuredRply = 8
	optSetMetaContext = 10

	repAck         = 1
	repInfo        = 3
	repMetaContext = 4
	repErrBit      = 1 << 31
	repErrUnsup    = repErrBit | 1

	infoExport    = 0
	infoBlockSize = 3

	tflagHasFlags    = 1 << 0 // transmission flags
	tflagReadOnly    = 1 << 1
	tflagFlush       = 1 << 2
	tflagFUA         = 1 << 3
	tflagTrim        = 1 << 5
	tflagWriteZeroes = 1 << 6
	tflagMultiConn   = 1 << 8
	tflagFastZero    = 1 << 11

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagFastZero = 1 << 4

	replyFlagDone = 1 << 0

	replyNone        = 0
	replyOffsetData  = 1
	replyOffsetHole  = 2
	replyBlockStatus = 5
	replyErrBit      = 1 << 15
	replyError       = replyErrBit | 1
	replyErrorOffset = replyErrBit | 2

	stateHole = 1 << 0 // base:allocation status flags
	stateZero = 1 << 1

	metaBaseAllocation = "base:allocation"

	// Defaults of the block size constraints when the server sends none.
	defaultMinBlock  = 1
	defaultPrefBlock = 4096
	defaultMaxBlock  = 32 << 20

	// maxPayload caps a read or write piece whatever the server allows.
	maxPayload = 32 << 20
	// maxOptReply caps an option reply's payload in the handshake.
	maxOptReply = 64 << 10
	// maxErrorChunk caps an error chunk: a 4096-byte message and its fixed fields.
	maxErrorChunk = 4096 + 14
	// maxExtents caps the descriptors of one block status chunk (the spec's 2^20).
	maxExtents = 1 << 20
	// maxReadPieces caps the separate stretches one read reply may fill before they meet.
	maxReadPieces = 1024
)

// cmdName names a command for errors.
func cmdName(cmd uint16) string {
	switch cmd {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdDisc:
		return "disconnect"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write zeroes"
	case cmdBlockStatus:
		return "block status"
	}
	return "command " + itoa(uint64(cmd))
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
