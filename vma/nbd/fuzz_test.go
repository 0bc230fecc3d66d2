package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzHandshake feeds arbitrary server bytes to the handshake: it must return (never panic or read
// past what the protocol allows), and what it accepts must be consistent.
func FuzzHandshake(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ex, err := handshake(bytes.NewReader(data), io.Discard, "disk")
		if err != nil {
			return
		}
		if ex.minBlock == 0 || checkBlockSizes(ex.minBlock, ex.prefBlock, ex.maxBlock) != nil {
			t.Fatalf("accepted block sizes %d/%d/%d", ex.minBlock, ex.prefBlock, ex.maxBlock)
		}
		if ex.hasMeta && !ex.structured {
			t.Fatal("meta context without structured replies")
		}
	})
}

// FuzzReplies feeds arbitrary server bytes to the reply parser with four requests in flight (two
// reads, a write, a block status): it must never panic, write outside a read's buffer, or report
// extents outside what was asked.
func FuzzReplies(f *testing.F) {
	f.Fuzz(func(t *testing.T, structured bool, data []byte) {
		pending := map[uint64]*request{
			1: {cmd: cmdRead, off: 0, length: 4096, buf: make([]byte, 4096)},
			2: {cmd: cmdWrite, off: 4096, length: 512},
			3: {cmd: cmdBlockStatus, off: 1 << 20, length: 1 << 20},
			4: {cmd: cmdRead, off: 1000, length: 10, buf: make([]byte, 10)},
		}
		rr := newReplyReader(bytes.NewReader(data), export{structured: structured, metaID: 7, hasMeta: true},
			func(c uint64) *request { return pending[c] })
		for {
			q, cookie, done, err := rr.next()
			if err != nil {
				return
			}
			if !done {
				continue
			}
			delete(pending, cookie)
			q.finish()
			end := int64(q.off) + int64(q.length)
			pos := int64(q.off)
			for _, e := range q.extents {
				if e.Offset != pos || e.Length <= 0 || e.Offset+e.Length > end {
					t.Fatalf("extent %+v outside [%d, %d) or not contiguous", e, q.off, end)
				}
				pos += e.Length
			}
			if q.err == nil && q.cmd == cmdBlockStatus && len(q.extents) == 0 {
				t.Fatal("block status succeeded without extents")
			}
			var e *Error
			if errors.As(q.err, &e) && (e.Offset < int64(q.off) || e.Offset+e.Length != end) {
				t.Fatalf("error %v outside the request [%d, %d)", e, q.off, end)
			}
		}
	})
}

// The seed corpus: server transcripts written to testdata/fuzz by NBD_WRITE_CORPUS=1 go test -run
// TestWriteCorpus, and committed.

func optReply(opt, typ uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, optReplyMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	return append(binary.BigEndian.AppendUint32(b, uint32(len(data))), data...)
}

func greeting(flags uint16) []byte {
	b := binary.BigEndian.AppendUint64(nil, nbdMagic)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	return binary.BigEndian.AppendUint16(b, flags)
}

func handshakeSeeds() map[string][]byte {
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, 1<<30)
	info = binary.BigEndian.AppendUint16(info, 0x0b6d)
	bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, 512)
	bs = binary.BigEndian.AppendUint32(bs, 4096)
	bs = binary.BigEndian.AppendUint32(bs, 65536)
	meta := append([]byte{0, 0, 0, 1}, metaBaseAllocation...)
	full := bytes.Join([][]byte{greeting(3), optReply(optStructuredRply, repAck, nil),
		optReply(optSetMetaContext, repMetaContext, meta), optReply(optSetMetaContext, repAck, nil),
		optReply(optGo, repInfo, info), optReply(optGo, repInfo, bs), optReply(optGo, repAck, nil)}, nil)
	exportName := binary.BigEndian.AppendUint64(nil, 1<<20)
	exportName = binary.BigEndian.AppendUint16(exportName, 1)
	return map[string][]byte{
		"go":            full,
		"no-go":         bytes.Join([][]byte{greeting(1), optReply(optStructuredRply, repErrUnsup, nil), optReply(optGo, repErrUnsup, nil), exportName, make([]byte, 124)}, nil),
		"plain":         append(greeting(2), exportName...),
		"unknown":       bytes.Join([][]byte{greeting(3), optReply(optStructuredRply, repAck, nil), optReply(optSetMetaContext, repAck, nil), optReply(optGo, repErrBit|6, []byte("no such export"))}, nil),
		"bad-blocksize": bytes.Replace(full, bs, append(bs[:2:2], 0, 0, 3, 0, 0, 0, 16, 0, 0, 1, 0, 0), 1),
		"oldstyle":      append(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, nbdMagic), oldstyleMagic), make([]byte, 8+2+124)...),
	}
}

func chunkBytes(flags, typ uint16, cookie uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, structMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return append(binary.BigEndian.AppendUint32(b, uint32(len(payload))), payload...)
}

func replySeeds() map[string][]byte {
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	data := cat(be64(0), bytes.Repeat([]byte{0x5a}, 2048))
	hole := cat(be64(2048), be32(2048))
	status := cat(be32(7), be32(65536), be32(3), be32(1<<20), be32(0))
	errChunk := cat(be32(uint32(EIO)), []byte{0, 4}, []byte("oops"))
	errOff := cat(be32(uint32(ENOSPC)), []byte{0, 0}, be64(4096+100))
	huge := chunkBytes(replyFlagDone, replyOffsetData, 1, be64(0))
	binary.BigEndian.PutUint32(huge[16:], 0xffffffff)
	return map[string][]byte{
		"read":        cat(chunkBytes(0, replyOffsetData, 1, data), chunkBytes(replyFlagDone, replyOffsetHole, 1, hole)),
		"read-none":   cat(chunkBytes(0, replyOffsetData, 4, cat(be64(1000), []byte("0123456789"))), chunkBytes(replyFlagDone, replyNone, 4, nil)),
		"status":      cat(chunkBytes(0, replyBlockStatus, 3, status), chunkBytes(replyFlagDone, replyNone, 3, nil)),
		"errors":      cat(chunkBytes(replyFlagDone, replyError, 1, errChunk), chunkBytes(replyFlagDone, replyErrorOffset, 2, errOff)),
		"simple":      cat(be32(simpleMagic), be32(0), be64(2), be32(simpleMagic), be32(uint32(EPERM)), be64(3)),
		"simple-read": cat(be32(simpleMagic), be32(0), be64(4), []byte("0123456789")),
		"huge":        huge,
		"bad-cookie":  chunkBytes(replyFlagDone, replyNone, 99, nil),
	}
}

// updateCorpus rewrites the seed corpus from handshakeSeeds and
// replySeeds: go test ./vma/nbd -run TestCorpusSeeds -update-corpus.
var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/*/seed-* from the seeds in fuzz_test.go")

// TestCorpusSeeds checks that the committed seed files of the fuzzers are
// the seeds this file builds, so that the corpus the ordinary tests run
// is the one described here; -update-corpus rewrites them.
func TestCorpusSeeds(t *testing.T) {
	check := func(target, name string, vals ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			default:
				fmt.Fprintf(&b, "%T(%v)\n", v, v)
			}
		}
		path := filepath.Join("testdata", "fuzz", target, "seed-"+name)
		if *updateCorpus {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != b.String() {
			t.Errorf("%s is not the seed fuzz_test.go builds (%v): run with -update-corpus", path, err)
		}
	}
	for name, b := range handshakeSeeds() {
		check("FuzzHandshake", name, b)
	}
	for name, b := range replySeeds() {
		check("FuzzReplies", name+"-simple", false, b)
		check("FuzzReplies", name+"-structured", true, b)
	}
}
