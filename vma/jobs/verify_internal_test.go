package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/copier"
	"github.com/godwit/godwit/vma/vcenter"
)

// TestBusHasher: the VMA's Hasher sends the key and blocks to whoever
// serves the verify subject and decodes the digests; with nobody serving it
// (an OMA that predates verify requests) it answers copier.ErrNoHasher
// after its request timeout, logged once, so that the copier reads back;
// an answer of the wrong shape is an error.
func TestBusHasher(t *testing.T) {
	u := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u.PublicKey}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u.Seed)
	subj, _ := subject.VerifyRequest("vma-1", "job-1")
	var logs testkit.Buffer
	h := &busHasher{conn: conn, subject: subj, disk: 2000, requestTimeout: 300 * time.Millisecond,
		log: slog.New(slog.NewTextHandler(&logs, nil))}
	key := bytes.Repeat([]byte{7}, 32)
	blocks := []copier.Area{{Offset: 0, Length: 1 << 20}, {Offset: 1 << 20, Length: 1 << 20}}

	for range 2 {
		if _, err := h.Digests(ctx, key, blocks); !errors.Is(err, copier.ErrNoHasher) {
			t.Fatalf("Digests with nobody serving = %v, want ErrNoHasher", err)
		}
	}
	if n := strings.Count(logs.String(), "the OMA does not answer verify requests"); n != 1 {
		t.Errorf("%d warnings, want one:\n%s", n, logs.String())
	}

	oma, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma"})
	if err != nil {
		t.Fatal(err)
	}
	defer oma.Close()
	var answer atomic.Pointer[events.VerifyDigests]
	err = oma.Serve(ctx, subject.AllVerify, "oma", bus.VerifyReplies, func(context.Context, string, []byte) (any, error) {
		return answer.Load(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := bytes.Repeat([]byte{9}, 16)
	answer.Store(&events.VerifyDigests{Sums: [][]byte{sum, nil}})
	got, err := h.Digests(ctx, key, blocks)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0][:], sum) || !got[1].IsZero() {
		t.Fatalf("Digests = %x, %v; want [%x, zero]", got, err, sum)
	}
	for _, bad := range []events.VerifyDigests{{Sums: [][]byte{sum}}, {Sums: [][]byte{sum, sum[:5]}}} {
		answer.Store(&bad)
		if _, err := h.Digests(ctx, key, blocks); err == nil || errors.Is(err, copier.ErrNoHasher) {
			t.Errorf("Digests answered %x = %v, want an error", bad.Sums, err)
		}
	}
}

// TestFailureCodes: a step that failed on a verification's mismatch is
// reported as verify_mismatch (the OMA counts those), and vCenter's
// errors keep their codes.
func TestFailureCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"mismatch", &copier.VerifyError{Offset: 4096}, events.FailureMismatch},
		{"wrapped mismatch", fmt.Errorf("copy: %w", &copier.VerifyError{}), events.FailureMismatch},
		{"not found", fmt.Errorf("find VM: %w", vcenter.ErrNotFound), events.FailureNotFound},
		{"other", errors.New("disk full"), events.FailureInternal},
	} {
		var se *stepError
		if err := fail("copy", 2000, tc.err); !errors.As(err, &se) || se.code != tc.want {
			t.Errorf("%s: fail(%v) has code %q, want %q", tc.name, tc.err, se.code, tc.want)
		}
	}
}
