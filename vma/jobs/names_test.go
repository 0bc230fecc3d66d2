package jobs_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestVMNamedWithEscapes replicates a VM whose name holds a C1 CSI (a
// terminal's escape sequence in one character), a carriage return, a tab,
// a C1 NEL and a bidi override, and watches it as `oma watch` does: the
// job completes like any other; oma watch shows the name quoted, with
// escapes; and neither its lines nor the OMA's and the VMA's logs hold any
// of those characters raw. (ESC and BEL themselves cannot come from
// vCenter: its SOAP answers are XML 1.0, which cannot carry them, and
// govmomi turns them into U+FFFD. The printer's own tests cover them.)
func TestVMNamedWithEscapes(t *testing.T) {
	const name = "evil\u009b2J\u009b31m\rok\t\u0085\u202egnp.exe"
	dangerous := []string{"\u009b", "\r", "\t", "\u0085", "\u202e"}
	b := newBed(t, bedConfig{sim: vcsim.Config{Extra: []vcsim.VM{{Name: name, Disks: []int64{1 << 20}}}}})
	if _, ok := b.vms[name]; !ok {
		t.Fatalf("no VM %q in the OMA's inventory", name)
	}

	seed, err := nats.NkeyOptionFromSeed(filepath.Join(b.o.Dir, "observer.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.o.NATSURL, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	var out testkit.Buffer
	done := make(chan error, 1)
	go func() { done <- watch.Run(ctx, nc, watch.NewPrinter(&out, time.UTC)) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run's three subscriptions (jobs, status, plans) are made on nc; a
	// flush after them means the server has them, so no event of the job
	// is missed.
	testkit.Eventually(t, "oma watch subscribed", func() bool { return nc.NumSubscriptions() == 3 })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	j := b.create(t, name)
	b.startFromOMA(t, j.JobID)
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("job %s = %s (%q), want completed", j.JobID, got.State, got.LastError)
	}
	testkit.Eventually(t, "oma watch shows the job's end", func() bool {
		return strings.Contains(out.String(), "job "+j.JobID+" completed: ")
	})
	if want := "job " + j.JobID + " created: " + strconv.Quote(name) + ", initial, 1 disk(s), 1.0 MiB, on vma-1"; !strings.Contains(out.String(), want) {
		t.Errorf("oma watch:\n%s\nhas no line with %q", out.String(), want)
	}
	for what, text := range map[string]string{"oma watch": out.String(), "the OMA's log": b.o.Logs.String(), "the VMA's log": b.v.Logs.String()} {
		if !strings.Contains(text, "gnp.exe") && what != "the OMA's log" { // the OMA logs no VM names today
			t.Errorf("%s never names the VM: the test shows nothing", what)
		}
		for _, c := range dangerous {
			if i := strings.Index(text, c); i >= 0 {
				t.Errorf("%s holds %q raw: ...%q...", what, c, text[max(0, i-60):min(len(text), i+60)])
			}
		}
	}
}
