package jobs

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/vma/store"
)

// heldFlush is a destination whose flushes wait until released, as on a
// long link, and which counts them.
type heldFlush struct {
	release chan struct{}
	mu      sync.Mutex
	flushes int
}

func (d *heldFlush) WriteAt(context.Context, []byte, int64) error    { return nil }
func (d *heldFlush) WriteZeroes(context.Context, int64, int64) error { return nil }
func (d *heldFlush) Flush(ctx context.Context) error {
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	d.flushes++
	d.mu.Unlock()
	return nil
}

// TestCheckpointsDoNotWaitForTheFlush: a flush that does not return does
// not hold the copy (maybe returns at once), the checkpoints posted
// meanwhile collapse into the newest, and that one is recorded only after
// a flush that followed it.
func TestCheckpointsDoNotWaitForTheFlush(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Update("job-1", true, func(j *store.Job) error {
		j.Disks = []store.Disk{{Key: 2000}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := &Runner{st: st, log: slog.New(slog.DiscardHandler), cfg: Config{CheckpointInterval: time.Hour}}
	saver := &checkpointSaver{r: r, job: "job-1", disk: 2000, at: time.Now()}
	dst := &heldFlush{release: make(chan struct{})}
	stop := saver.start(t.Context(), dst)

	posted := make(chan struct{})
	go func() {
		defer close(posted)
		for i := int64(1); i <= 10; i++ {
			saver.maybe(i * checkpointBytes)
		}
	}()
	select {
	case <-posted:
	case <-time.After(time.Minute):
		t.Fatal("maybe waits for the flush")
	}
	if j, _ := st.Get("job-1"); j.Disks[0].Checkpoint != 0 {
		t.Fatalf("checkpoint %d recorded before any flush returned", j.Disks[0].Checkpoint)
	}
	close(dst.release)
	stop()
	j, err := st.Get("job-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.Disks[0].Checkpoint, 10*int64(checkpointBytes); got != want || saver.saved != want {
		t.Errorf("recorded checkpoint %d (saver %d), want the newest posted, %d", got, saver.saved, want)
	}
	// The first flush took checkpoint 1; the rest waited in the one-slot
	// mailbox, replaced by newer ones: at most one more flush.
	if dst.flushes < 1 || dst.flushes > 2 {
		t.Errorf("%d flushes for 10 checkpoints posted while the first flush was held, want 1 or 2", dst.flushes)
	}
}
