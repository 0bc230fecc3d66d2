package control_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/testkit"
)

// gatedNbdkit writes a wrapper that starts nbdkit at once, except for an
// nbdkit serving a job of VM held: that one creates the file waiting, then
// waits until the file gate exists.
func gatedNbdkit(t *testing.T, held string) (wrapper, waiting, gate string) {
	t.Helper()
	dir := t.TempDir()
	wrapper, waiting, gate = filepath.Join(dir, "nbdkit"), filepath.Join(dir, "waiting"), filepath.Join(dir, "open")
	script := "#!/bin/sh\ncase \"$*\" in *repl-" + held + "-*) : > " + waiting + "; while [ ! -e " + gate + " ]; do sleep 0.01; done;; esac\nexec nbdkit \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return wrapper, waiting, gate
}

// TestCreateHoldsNoLockWhileNbdkitStarts: while one job's nbdkit is slow
// to start, jobs of other VMs are created, a second job of the same VM is
// refused at once, and every job gets its own port.
func TestCreateHoldsNoLockWhileNbdkitStarts(t *testing.T) {
	t.Parallel()
	h := &harness{t: t, dir: t.TempDir(), clock: testkit.NewClock()}
	h.first, h.last = testkit.FreePorts(t, 3)
	var waiting, gate string
	h.nbdkit, waiting, gate = gatedNbdkit(t, "vm-1")
	h.boot()
	conn, _ := h.vma("vma-1")
	h.learn(conn, "vma-1", testVM("vm-1", 1<<20), testVM("vm-2", 1<<20), testVM("vm-3", 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type created struct {
		port int
		err  error
	}
	slow := make(chan created, 1)
	go func() {
		j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial})
		if err != nil {
			slow <- created{err: err}
			return
		}
		slow <- created{port: j.Disks[0].Export.Port}
	}()
	testkit.Eventually(t, "vm-1's nbdkit starting", func() bool { _, err := os.Stat(waiting); return err == nil })
	// vm-1's job is planned and waits for its nbdkit: a second one is refused at once.
	if _, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial}); fault.KindOf(err) != fault.Conflict {
		t.Errorf("a second job of vm-1 while the first is created = %v, want a conflict", err)
	}
	ports := map[int]string{}
	for _, vm := range []string{"vm-2", "vm-3"} {
		j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: vm}, ReplicationType: events.ReplicationInitial})
		if err != nil {
			t.Fatalf("create %s while vm-1's nbdkit starts: %v", vm, err)
		}
		ports[j.Disks[0].Export.Port] = vm
	}
	select {
	case c := <-slow:
		t.Fatalf("vm-1's create returned before its nbdkit could start: %+v", c)
	default:
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := <-slow
	if c.err != nil {
		t.Fatalf("create vm-1: %v", c.err)
	}
	if other, dup := ports[c.port]; dup || len(ports) != 2 {
		t.Errorf("vm-1 got port %d, also given to %s (ports %v)", c.port, other, ports)
	}
}
