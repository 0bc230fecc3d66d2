package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
)

// fake is a scripted NBD server for the edge cases nbdkit cannot produce: an old server that does
// not know NBD_OPT_GO, and servers that break the protocol.
type fake struct {
	structured bool // accept NBD_OPT_STRUCTURED_REPLY
	noGo       bool // answer NBD_OPT_GO with NBD_REP_ERR_UNSUP
	size       uint64
	// transmit serves the transmission phase; nil serves a memory disk with simple replies.
	transmit func(conn net.Conn, disk []byte)
}

// dialFake connects a client to f over a pipe.
func dialFake(t *testing.T, f fake) (*Client, error) {
	t.Helper()
	cfg := Config{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if network != "tcp" || addr != "fake:10809" {
			t.Errorf("Dial(%q, %q), want tcp fake:10809", network, addr)
		}
		client, server := net.Pipe()
		go f.serve(server)
		return client, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "nbd://fake/disk", cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (f fake) serve(conn net.Conn) {
	defer conn.Close()
	w := func(vals ...any) {
		for _, v := range vals {
			binary.Write(conn, binary.BigEndian, v)
		}
	}
	w(uint64(nbdMagic), uint64(optMagic), uint16(flagFixedNewstyle|flagNoZeroes))
	var cflags uint32
	if binary.Read(conn, binary.BigEndian, &cflags) != nil {
		return
	}
	reply := func(opt, typ uint32, data []byte) {
		b := binary.BigEndian.AppendUint64(nil, optReplyMagic)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		conn.Write(append(binary.BigEndian.AppendUint32(b, uint32(len(data))), data...))
	}
	for {
		var hdr struct {
			Magic     uint64
			Opt, Size uint32
		}
		if binary.Read(conn, binary.BigEndian, &hdr) != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, conn, int64(hdr.Size)); err != nil {
			return
		}
		switch {
		case hdr.Opt == optStructuredRply && f.structured:
			reply(hdr.Opt, repAck, nil)
		case hdr.Opt == optSetMetaContext:
			reply(hdr.Opt, repMetaContext, append([]byte{0, 0, 0, 7}, metaBaseAllocation...))
			reply(hdr.Opt, repAck, nil)
		case hdr.Opt == optGo && !f.noGo:
			info := binary.BigEndian.AppendUint16(nil, infoExport)
			info = binary.BigEndian.AppendUint64(info, f.size)
			info = binary.BigEndian.AppendUint16(info, tflagHasFlags|tflagFlush)
			reply(hdr.Opt, repInfo, info)
			reply(hdr.Opt, repAck, nil)
			f.transmitPhase(conn)
			return
		case hdr.Opt == optExportName:
			w(f.size, uint16(tflagHasFlags|tflagFlush))
			f.transmitPhase(conn)
			return
		default:
			reply(hdr.Opt, repErrUnsup, []byte("no"))
		}
	}
}

func (f fake) transmitPhase(conn net.Conn) {
	disk := make([]byte, f.size)
	if f.transmit != nil {
		f.transmit(conn, disk)
		return
	}
	for {
		q, ok := readRequest(conn)
		if !ok {
			return
		}
		switch q.Type {
		case cmdRead:
			conn.Write(simpleReply(0, q.Cookie))
			conn.Write(disk[q.Off : q.Off+uint64(q.Len)])
		case cmdWrite:
			io.ReadFull(conn, disk[q.Off:q.Off+uint64(q.Len)])
			conn.Write(simpleReply(0, q.Cookie))
		case cmdDisc:
			return
		default:
			conn.Write(simpleReply(uint32(EINVAL), q.Cookie))
		}
	}
}

func simpleReply(errno uint32, cookie uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, simpleMagic)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

type rawRequest struct {
	Magic       uint32
	Flags, Type uint16
	Cookie, Off uint64
	Len         uint32
}

func readRequest(conn net.Conn) (rawRequest, bool) {
	var q rawRequest
	err := binary.Read(conn, binary.BigEndian, &q)
	return q, err == nil && q.Magic == requestMagic
}

// TestExportNameFallback talks to a server that refuses NBD_OPT_GO and structured replies: the client
// falls back to NBD_OPT_EXPORT_NAME and simple replies.
func TestExportNameFallback(t *testing.T) {
	t.Parallel()
	c, err := dialFake(t, fake{noGo: true, size: 1 << 20})
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	if c.ex.usedGo || c.ex.structured || c.Size() != 1<<20 {
		t.Fatalf("export = %+v, want NBD_OPT_EXPORT_NAME, simple replies, 1 MiB", c.ex)
	}
	if lo, pref, hi := c.BlockSize(); lo != 1 || pref != 4096 || hi != 32<<20 {
		t.Errorf("BlockSize() = %d, %d, %d, want the defaults 1, 4096, 32 MiB", lo, pref, hi)
	}
	ctx := context.Background()
	want := bytes.Repeat([]byte("godwit"), 10000)
	if err := c.WriteAt(ctx, want, 1000, false); err != nil {
		t.Fatalf("WriteAt = %v", err)
	}
	got := make([]byte, len(want))
	if err := c.ReadAt(ctx, got, 1000); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt = %v (equal %v)", err, bytes.Equal(got, want))
	}
	if err := c.Trim(ctx, 0, 10); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Trim = %v, want ErrUnsupported (not offered)", err)
	}
	if _, err := c.BlockStatus(ctx, 0, 10); !errors.Is(err, ErrUnsupported) {
		t.Errorf("BlockStatus = %v, want ErrUnsupported", err)
	}
}

// TestHostileServer answers a request with replies that break the protocol: the call fails with an
// error, promptly, and so does every later call.
func TestHostileServer(t *testing.T) {
	t.Parallel()
	chunk := func(flags, typ uint16, cookie uint64, length uint32, payload ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, structMagic)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, cookie)
		b = binary.BigEndian.AppendUint32(b, length)
		return append(b, payload...)
	}
	simple := func(cookie uint64) []byte { return simpleReply(0, cookie) }
	for _, tc := range []struct {
		name       string
		structured bool
		cmd        uint16
		reply      func(cookie uint64) []byte
		want       error
	}{
		{"4 GiB data chunk", true, cmdRead, func(c uint64) []byte {
			return chunk(replyFlagDone, replyOffsetData, c, 0xffffffff, make([]byte, 8)...)
		}, ErrProtocol},
		{"data chunk beyond the read", true, cmdRead, func(c uint64) []byte {
			return chunk(replyFlagDone, replyOffsetData, c, 8+4096, binary.BigEndian.AppendUint64(nil, 4096)...)
		}, ErrProtocol},
		{"wrong cookie", false, cmdRead, func(c uint64) []byte { return simple(c + 1) }, ErrProtocol},
		{"truncated header", true, cmdWrite, func(c uint64) []byte { return simple(c)[:9] }, io.ErrUnexpectedEOF},
		{"structured reply not negotiated", false, cmdWrite, func(c uint64) []byte {
			return chunk(replyFlagDone, replyNone, c, 0)
		}, ErrProtocol},
		{"data chunk to a write", true, cmdWrite, func(c uint64) []byte {
			return chunk(replyFlagDone, replyOffsetData, c, 9, make([]byte, 9)...)
		}, ErrProtocol},
		{"simple reply with data to a structured read", true, cmdRead, simple, ErrProtocol},
		{"bad magic", true, cmdWrite, func(c uint64) []byte { return []byte("HTTP/1.1 400 Bad\r\n\r\n") }, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dialFake(t, fake{structured: tc.structured, size: 1 << 20, transmit: func(conn net.Conn, _ []byte) {
				q, ok := readRequest(conn)
				if !ok {
					return
				}
				if q.Type == cmdWrite {
					io.CopyN(io.Discard, conn, int64(q.Len))
				}
				conn.Write(tc.reply(q.Cookie)) // and hang up
			}})
			if err != nil {
				t.Fatalf("Dial = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			p := make([]byte, 4096)
			if tc.cmd == cmdRead {
				err = c.ReadAt(ctx, p, 0)
			} else {
				err = c.WriteAt(ctx, p, 0, false)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("call = %v, want %v", err, tc.want)
			}
			if err := c.Flush(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Flush on the failed connection = %v, want its cause", err)
			}
		})
	}
}

// TestCancelMidData cancels a read while its data is arriving straight into the caller's buffer. A
// server that goes on sending is waited for, and the connection stays usable; one that stalls
// mid-data is given the grace period, then its connection is broken so that the call returns.
func TestCancelMidData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stalls bool
	}{
		{"server goes on", false},
		{"server stalls", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 4096
			resume := make(chan struct{})
			c, err := dialFake(t, fake{structured: true, size: 1 << 20, transmit: func(conn net.Conn, _ []byte) {
				q, ok := readRequest(conn)
				if !ok {
					return
				}
				b := binary.BigEndian.AppendUint32(nil, structMagic)
				b = binary.BigEndian.AppendUint16(b, replyFlagDone)
				b = binary.BigEndian.AppendUint16(b, replyOffsetData)
				b = binary.BigEndian.AppendUint64(b, q.Cookie)
				b = binary.BigEndian.AppendUint32(b, 8+n)
				b = binary.BigEndian.AppendUint64(b, q.Off)
				conn.Write(append(b, bytes.Repeat([]byte{1}, 100)...))
				<-resume
				conn.Write(bytes.Repeat([]byte{1}, n-100))
				if q, ok = readRequest(conn); ok && q.Type == cmdFlush {
					conn.Write(simpleReply(0, q.Cookie))
				}
				io.Copy(io.Discard, conn)
			}})
			if err != nil {
				t.Fatalf("Dial = %v", err)
			}
			c.abandonGrace = 5 * time.Second
			if tc.stalls {
				c.abandonGrace = 50 * time.Millisecond
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.ReadAt(ctx, make([]byte, n), 0) }()
			waitClaimed(t, c)
			cancel()
			if !tc.stalls {
				time.Sleep(20 * time.Millisecond) // let abandon start waiting
				close(resume)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) && err != nil {
					t.Fatalf("ReadAt = %v, want nil or context.Canceled", err)
				}
			case <-time.After(testkit.Wait(t)):
				t.Fatal("the cancelled ReadAt did not return")
			}
			fctx, fcancel := context.WithTimeout(context.Background(), testkit.Wait(t))
			defer fcancel()
			err = c.Flush(fctx)
			switch {
			case tc.stalls && !errors.Is(err, ErrProtocol):
				t.Fatalf("Flush after the stalled read = %v, want the broken connection's ErrProtocol", err)
			case !tc.stalls && err != nil:
				t.Fatalf("Flush after the abandoned read = %v, want the connection still usable", err)
			}
			if tc.stalls {
				close(resume)
			}
		})
	}
}

// waitClaimed waits until c's reader is reading a reply's data straight into a caller's buffer.
func waitClaimed(t *testing.T, c *Client) {
	t.Helper()
	for deadline := time.Now().Add(min(testkit.Wait(t), testkit.MaxEventually)); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		claimed := false
		for _, q := range c.pending {
			q.mu.Lock()
			claimed = claimed || q.busy != nil
			q.mu.Unlock()
		}
		c.mu.Unlock()
		if claimed {
			return
		}
	}
	t.Fatal("the reader never claimed a read buffer")
}
