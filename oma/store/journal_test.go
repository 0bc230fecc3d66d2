package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
)

// dump returns every replicated bucket's items, as "bucket/key=value".
func dump(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if !replicated(name) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				out[fmt.Sprintf("%s/%q", name, k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestJournalCopiesTheState: a store written before and after its journal
// is turned on, copied through the journal alone into another store, ends
// the same in every replicated bucket; the commit hook sees each seq; a
// page of a discovery result is not copied; a copied outbox goes on after
// its keys.
func TestJournalCopiesTheState(t *testing.T) {
	active, standby := open(t), open(t)
	now := time.Now()
	write := func(i int) {
		t.Helper()
		err := active.Update(func(tx *bbolt.Tx) error {
			id := fmt.Sprintf("job-%d", i)
			if err := PutJob(tx, Job{ID: id, VM: events.VMRef{ID: "vm-1"}, ReplicaID: "r-1", State: "pending", CreatedAt: now}); err != nil {
				return err
			}
			if err := PutVMA(tx, VMA{ID: fmt.Sprintf("vma-%d", i), NKey: "U"}); err != nil {
				return err
			}
			if err := MarkApplied(tx, fmt.Sprintf("ev-%d", i), now); err != nil {
				return err
			}
			if err := PutDiscoverPage(tx, events.DiscoverResult{VMAID: "vma-1", RequestID: "r", Page: i}, now); err != nil {
				return err
			}
			ev, err := events.New("/t", &events.JobCreated{JobID: id, VMAID: "vma-1"}, now)
			if err != nil {
				return err
			}
			return Enqueue(tx, ev)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(1) // before the journal: EnableJournal copies it
	var mu sync.Mutex
	var hooked []uint64
	active.SetCommitHook(func(seq uint64) { mu.Lock(); hooked = append(hooked, seq); mu.Unlock() })
	if err := active.EnableJournal(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		write(i)
	}
	if err := active.Update(func(tx *bbolt.Tx) error { return DeleteVMA(tx, "vma-2") }); err != nil {
		t.Fatal(err)
	}
	if n, err := active.PruneApplied(now.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneApplied = %d, %v", n, err)
	}

	// Copy in two pieces, as a shipper does, trimming what went.
	first, err := active.JournalAfter(0, 5)
	if err != nil || len(first) != 5 {
		t.Fatalf("JournalAfter(0, 5) = %d changes, %v", len(first), err)
	}
	if err := standby.ApplyReplica(first, 5); err != nil {
		t.Fatal(err)
	}
	if err := active.TrimJournal(first[len(first)-1].Seq); err != nil {
		t.Fatal(err)
	}
	rest, err := active.JournalAfter(0, 1000)
	if err != nil || len(rest) == 0 || rest[0].Seq != first[len(first)-1].Seq+1 {
		t.Fatalf("after the trim: %d changes from seq %v, %v", len(rest), rest, err)
	}
	if err := standby.ApplyReplica(rest, 99); err != nil {
		t.Fatal(err)
	}
	want, got := dump(t, active), dump(t, standby)
	if len(want) == 0 || len(got) != len(want) {
		t.Errorf("the copy holds %d items, the original %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: copied %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if bytes.HasPrefix([]byte(k), bucketPages) {
			t.Errorf("%s was copied: pages stay", k)
		}
	}
	if pos, err := standby.ReplicaSeq(); err != nil || pos != 99 {
		t.Errorf("ReplicaSeq = %d, %v; want 99", pos, err)
	}
	mu.Lock()
	last := rest[len(rest)-1].Seq
	if len(hooked) == 0 || hooked[len(hooked)-1] != last {
		t.Errorf("the hook saw seqs %v, want them to end at %d", hooked, last)
	}
	mu.Unlock()

	// The standby, taking over, enqueues after the copied outbox.
	if err := standby.Update(func(tx *bbolt.Tx) error {
		ev, err := events.New("/t", &events.JobCreated{JobID: "job-9", VMAID: "vma-1"}, now)
		if err != nil {
			return err
		}
		return Enqueue(tx, ev)
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := standby.Outbox(); err != nil || len(out) != 5 {
		t.Errorf("the standby's outbox holds %d events, want 4 copied and its own (%v)", len(out), err)
	}

	// Reset, the copy is empty and a journal cannot be applied to an active store.
	if err := standby.ResetReplica(); err != nil {
		t.Fatal(err)
	}
	if n := len(dump(t, standby)); n != 0 {
		t.Errorf("after ResetReplica the copy holds %d items", n)
	}
	if err := active.ApplyReplica(rest, 1); err == nil {
		t.Error("ApplyReplica on a store with its journal on succeeded")
	}
}
