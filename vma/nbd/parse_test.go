package nbd

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestHandshakeSeeds checks what the handshake makes of the fuzz seeds.
func TestHandshakeSeeds(t *testing.T) {
	t.Parallel()
	seeds := handshakeSeeds()
	for _, tc := range []struct {
		name    string
		want    export
		wantErr string
	}{
		{name: "go", want: export{size: 1 << 30, flags: 0x0b6d, structured: true, metaID: 1, hasMeta: true, minBlock: 512, prefBlock: 4096, maxBlock: 65536, usedGo: true}},
		{name: "no-go", want: export{size: 1 << 20, flags: 1, minBlock: 1, prefBlock: 4096, maxBlock: 32 << 20}},
		{name: "plain", want: export{size: 1 << 20, flags: 1, minBlock: 1, prefBlock: 4096, maxBlock: 32 << 20}},
		{name: "unknown", wantErr: `server refused: unknown export ("no such export")`},
		{name: "bad-blocksize", wantErr: "protocol violation: minimum block size 768"},
		{name: "oldstyle", wantErr: "oldstyle server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := handshake(bytes.NewReader(seeds[tc.name]), io.Discard, "disk")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("handshake(%s) = %v, want an error containing %q", tc.name, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("handshake(%s) = %+v, %v, want %+v", tc.name, got, err, tc.want)
			}
		})
	}
}

// TestReplySeeds checks what the reply parser makes of the structured fuzz seeds.
func TestReplySeeds(t *testing.T) {
	t.Parallel()
	seeds := replySeeds()
	read := func() *request { return &request{cmd: cmdRead, off: 0, length: 4096, buf: make([]byte, 4096)} }
	for _, tc := range []struct {
		name       string
		structured bool
		q          *request
		cookie     uint64
		check      func(*request) error
		fatal      error
	}{
		{"read", true, read(), 1, func(q *request) error {
			if q.err != nil || !bytes.Equal(q.buf, append(bytes.Repeat([]byte{0x5a}, 2048), make([]byte, 2048)...)) {
				return errors.New("wrong data")
			}
			return nil
		}, nil},
		{"status", true, &request{cmd: cmdBlockStatus, off: 1 << 20, length: 1 << 20}, 3, func(q *request) error {
			want := []Extent{{Offset: 1 << 20, Length: 65536, Hole: true, Zero: true}, {Offset: 1<<20 + 65536, Length: 1<<20 - 65536}}
			if q.err != nil || len(q.extents) != 2 || q.extents[0] != want[0] || q.extents[1] != want[1] {
				return errors.New("wrong extents")
			}
			return nil
		}, nil},
		{"errors", true, read(), 1, func(q *request) error {
			if q.err == nil || q.err.Error() != "nbd read at 0 (+4096): EIO: oops" {
				return q.err
			}
			return nil
		}, nil},
		{"huge", true, read(), 1, nil, ErrProtocol},
		{"bad-cookie", true, read(), 1, nil, ErrProtocol},
		{"read", false, read(), 1, nil, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rr := newReplyReader(bytes.NewReader(seeds[tc.name]), export{structured: tc.structured, metaID: 7},
				func(c uint64) *request {
					if c == tc.cookie {
						return tc.q
					}
					return nil
				})
			for {
				q, _, done, err := rr.next()
				if err != nil {
					if tc.fatal == nil || !errors.Is(err, tc.fatal) {
						t.Fatalf("next() = %v, want %v", err, tc.fatal)
					}
					return
				}
				if done {
					q.finish()
					if err := tc.check(q); err != nil {
						t.Fatalf("reply %s: %v", tc.name, err)
					}
					return
				}
			}
		})
	}
}

// TestStdlibOnly keeps nbd (and nbdtest) free of third-party imports.
func TestStdlibOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".", "./nbdtest").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, "github.com/godwit/godwit/vma/nbd") {
			t.Errorf("nbd depends on %s", dep)
		}
	}
}
