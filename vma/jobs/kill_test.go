package jobs_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/vcsim"
)

// externalVMA returns a bedConfig.external that builds the vma command,
// registers vma-1 with the OMA and starts it with extra flags.
func externalVMA(extra ...string) func(testing.TB, *testbed.OMA, *vcsim.Simulator) *testbed.Process {
	return func(tb testing.TB, o *testbed.OMA, sim *vcsim.Simulator) *testbed.Process {
		tb.Helper()
		dir := tb.TempDir()
		bin := testbed.BuildCommand(tb, dir, "vma")
		var cred struct {
			NKeySeed string `json:"nkey_seed"`
		}
		if code := o.Do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-1"}, &cred); code != http.StatusCreated {
			tb.Fatalf("register vma-1 = %d", code)
		}
		seed := filepath.Join(dir, "nats.seed")
		if err := os.WriteFile(seed, []byte(cred.NKeySeed), 0o600); err != nil {
			tb.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		p := &testbed.Process{TB: tb, What: "the VMA process", Bin: bin, URL: "http://" + addr, Logs: &testkit.Buffer{},
			Args: append([]string{"-data", filepath.Join(dir, "vma"), "-id", "vma-1", "-api-addr", addr, "-nats-url", o.NATSURL,
				"-nats-seed", seed, "-vcenter-ca", sim.CAFile, "-oma-url", o.URL, "-source", "datastore"}, extra...)}
		p.Start()
		tb.Cleanup(p.Stop)
		o.WaitForVMAKey(tb, "vma-1", "")
		return p
	}
}

// TestSIGKILLMidCopyResumes kills the VMA process with SIGKILL at random
// points of a copy, three times in one job. Each time it starts again it
// resumes the job from its checkpoints, and the job completes byte-exact:
// every run after a kill starts its disks where the last checkpoint was,
// not from zero.
func TestSIGKILLMidCopyResumes(t *testing.T) {
	testkit.Long(t)
	b := newBed(t, bedConfig{external: externalVMA("-rate", "1M", "-checkpoint-interval", "200ms")})
	rng := rand.New(rand.NewPCG(11, 12))
	j := b.create(t, threeDisks)
	b.startFromOMA(t, j.JobID)
	for kill := 1; kill <= 3; kill++ {
		// Kill at a random point once this run moved a checkpoint on, and
		// had the time to record it: the next progress event carries it,
		// within a progress interval (1 s), and the VMA records it once
		// that event is acknowledged.
		var p struct {
			State string `json:"state"`
			Phase string `json:"phase"`
			Disks []struct {
				Checkpoint int64 `json:"checkpoint"`
			} `json:"disks"`
		}
		first := int64(-1)
		testkit.Eventually(t, fmt.Sprintf("a checkpoint moved before kill %d", kill), func() bool {
			b.vmaDo(t, http.MethodGet, "/api/v1/progress/"+j.JobID, nil, &p)
			if p.State != "running" || p.Phase != events.PhaseCopying || len(p.Disks) == 0 {
				return false
			}
			var sum int64
			for _, d := range p.Disks {
				sum += d.Checkpoint
			}
			if first < 0 {
				first = sum
			}
			return sum > first
		})
		time.Sleep(1500*time.Millisecond + time.Duration(rng.IntN(700))*time.Millisecond)
		b.ext.Kill()
		b.ext.Start()
	}
	got := b.wait(t, j.JobID)
	if got.State != events.JobCompleted {
		t.Fatalf("job = %s (%s), want completed\n%s", got.State, got.LastError, b.ext.Logs)
	}
	b.assertCopied(t, threeDisksPath, got)
	b.assertNoSnapshot(t, threeDisksPath)

	// The log of each run after a kill, from its "resuming a job" on.
	runs := regexp.MustCompile(`msg="resuming a job the VMA did not finish"`).Split(b.ext.Logs.String(), -1)[1:]
	if len(runs) != 3 {
		t.Fatalf("the job was resumed %d times, want 3", len(runs))
	}
	from := regexp.MustCompile(`msg="resuming disk" [^\n]*?from=(\d+)`)
	for i, run := range runs {
		var resumed int64
		for _, m := range from.FindAllStringSubmatch(run, -1) {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			resumed += n
		}
		if resumed == 0 {
			t.Errorf("run %d after a kill resumed no disk from a checkpoint: it started from zero", i+1)
		}
	}
}
