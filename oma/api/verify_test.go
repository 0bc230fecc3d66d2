package api_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/blockdigest"
	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

// TestVerifyRequests: a VMA gets the digests of blocks of its job's
// volume, hashed by the OMA from the volume its store names (data, zeros,
// a hole); another VMA asking for that job is told it does not exist, as
// for an unknown job; blocks out of range or order, too many of them, a
// bad key or an unknown disk are refused, naming what is wrong.
func TestVerifyRequests(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	const size = 4 << 20
	o.learn(v, testVM("vm-7", size))
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-7", "initial"), &j); code != http.StatusCreated {
		t.Fatalf("create = %d %+v", code, j)
	}
	disk := j.Disks[0]
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	f, err := os.OpenFile(disk.VolumePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		_, err = f.WriteAt(make([]byte, 1<<20), 1<<20) // zeros written; the rest is a hole
	}
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	key, err := blockdigest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	h := blockdigest.New(key)
	h.Write(data)
	want := h.Sum()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subj, _ := subject.VerifyRequest("vma-1", j.JobID)
	var got events.VerifyDigests
	req := events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{0, 1 << 20}, {1 << 20, 1 << 20}, {2 << 20, 2 << 20}}}
	if err := v.conn.Request(ctx, subj, req, &got); err != nil {
		t.Fatalf("verify request = %v", err)
	}
	if len(got.Sums) != 3 || string(got.Sums[0]) != string(want[:]) || len(got.Sums[1]) != 0 || len(got.Sums[2]) != 0 {
		t.Fatalf("digests = %x, want [%x, zeros, zeros]", got.Sums, want)
	}

	// Another VMA: as an unknown job.
	v2 := o.addVMA("vma-2")
	for job, wantMsg := range map[string]string{
		j.JobID:     fmt.Sprintf("no replication job %q for VMA vma-2", j.JobID),
		"repl-nope": `no replication job "repl-nope" for VMA vma-2`,
	} {
		var re *bus.RemoteError
		s, _ := subject.VerifyRequest("vma-2", job)
		if err := v2.conn.Request(ctx, s, req, &got); !errors.As(err, &re) || re.Code != bus.CodeNotFound || re.Message != wantMsg {
			t.Errorf("vma-2's verify request for %s = %v, want %s %q", job, err, bus.CodeNotFound, wantMsg)
		}
	}

	many := make([][2]int64, blockdigest.MaxBlocks+1)
	for i := range many {
		many[i] = [2]int64{int64(i) * 4096, 4096}
	}
	tests := []struct {
		name string
		req  events.VerifyRequest
		want string
	}{
		{"past the capacity", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{3 << 20, 2 << 20}}}, "block 0 [3145728, +2097152) is not in order within the disk's 4194304 bytes"},
		{"starts past the end", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{size, 1}}}, "block 0 [4194304, +1)"},
		{"huge length", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{1, 1<<63 - 1}}}, "is not in order within"},
		{"negative offset", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{-1, 10}}}, "block 0 [-1, +10)"},
		{"empty block", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{0, 0}}}, "block 0 [0, +0)"},
		{"out of order", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{1 << 20, 10}, {0, 10}}}, "block 1 [0, +10)"},
		{"overlapping", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: [][2]int64{{0, 10}, {5, 10}}}, "block 1 [5, +10)"},
		{"too many blocks", events.VerifyRequest{Disk: disk.Key, Key: key, Blocks: many}, "257 blocks, want 1 to 256"},
		{"no blocks", events.VerifyRequest{Disk: disk.Key, Key: key}, "0 blocks"},
		{"short key", events.VerifyRequest{Disk: disk.Key, Key: key[:8], Blocks: req.Blocks}, "key of 8 bytes, want 32"},
		{"unknown disk", events.VerifyRequest{Disk: 9999, Key: key, Blocks: req.Blocks}, "has no disk 9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var re *bus.RemoteError
			err := v.conn.Request(ctx, subj, tt.req, &got)
			if !errors.As(err, &re) || !strings.Contains(re.Message, tt.want) {
				t.Errorf("verify request = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
