package jobs_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestExportsOpenDuringTheSnapshot: a job opens its exports while vCenter
// takes the snapshot (over a long link each NBD handshake is round trips).
// The simulated vCenter holds the snapshot until the kernel shows a TCP
// connection established to one of the OMA's NBD ports; opening the
// exports only after the snapshot, the hold runs out and the test fails.
func TestExportsOpenDuringTheSnapshot(t *testing.T) {
	var first, last atomic.Int64 // the OMA's NBD ports, once it runs
	var held, seen atomic.Bool
	b := newBed(t, bedConfig{sim: vcsim.Config{BeforeSnapshot: func(string) {
		held.Store(true)
		// Generous: the export is dialled before the VMA even logs in.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if tcpEstablishedTo(t, int(first.Load()), int(last.Load())) {
				seen.Store(true)
				return
			}
		}
	}}})
	first.Store(int64(b.o.FirstPort))
	last.Store(int64(b.o.LastPort))
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	if got := b.wait(t, j.JobID); got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s)", got.State, got.LastError)
	}
	if !held.Load() {
		t.Fatal("the simulator was never asked for a snapshot")
	}
	if !seen.Load() {
		t.Error("no NBD connection was open while vCenter took the snapshot: the exports open only after it")
	}
}

// tcpEstablishedTo reports whether /proc/net/tcp holds an established
// connection to a port in [first, last] on 127.0.0.1.
func tcpEstablishedTo(t *testing.T, first, last int) bool {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Errorf("read the TCP table: %v", err)
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st ...: addresses as hex IP:port
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "01" { // TCP_ESTABLISHED
			continue
		}
		ip, port, _ := strings.Cut(fields[2], ":")
		p, err := strconv.ParseInt(port, 16, 32)
		if err == nil && ip == "0100007F" && int(p) >= first && int(p) <= last {
			return true
		}
	}
	return false
}
