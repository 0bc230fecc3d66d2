package bus_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
)

// natsCLI runs the real nats CLI (`make test` installs v0.5.0 into ./bin
// and puts it on PATH) against url as the user whose seed is in seedFile.
func natsCLI(t *testing.T, url, seedFile string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("nats")
	if err != nil {
		t.Fatalf("the nats CLI is not on PATH (make test installs it into ./bin): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--no-context", "--server", url, "--nkey", seedFile}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no saved contexts
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestNatsCLIObserver runs the README's nats CLI commands as the observer.
func TestNatsCLIObserver(t *testing.T) {
	t.Parallel()
	obs := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{Observers: []string{obs.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	var last events.Event
	for seq := uint64(1); seq <= 3; seq++ {
		ev, err := oma.Publish(ctx, progress("vma-1", "repl-vm-143233-1754407216", seq))
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}
	seed := obs.SeedFile(t)
	natsCLI := func(t *testing.T, url, seed string, args ...string) (string, error) {
		t.Helper()
		return natsCLI(t, url, seed, append([]string{"--js-api-prefix", bus.ObserverAPIPrefix}, args...)...)
	}

	out, err := natsCLI(t, srv.ClientURL(), seed, "stream", "ls", "--names")
	if err != nil {
		t.Fatalf("nats stream ls: %v\n%s", err, out)
	}
	for _, s := range []string{"COMMANDS", "DISCOVERY", "JOBS", "PRESENCE", "PROGRESS"} {
		if !strings.Contains(out, s) {
			t.Errorf("nats stream ls does not list %s:\n%s", s, out)
		}
	}

	out, err = natsCLI(t, srv.ClientURL(), seed, "sub", "godwit.progress.>", "--last", "--count=1")
	if err != nil {
		t.Fatalf("nats sub --last: %v\n%s", err, out)
	}
	if !strings.Contains(out, last.ID) || !strings.Contains(out, `"seq":3`) {
		t.Errorf("nats sub --last does not show the last event %s:\n%s", last.ID, out)
	}

	out, err = natsCLI(t, srv.ClientURL(), seed, "stream", "get", "PROGRESS", "--last-for", "godwit.progress.vma-1.repl-vm-143233-1754407216")
	if err != nil {
		t.Fatalf("nats stream get: %v\n%s", err, out)
	}
	if !strings.Contains(out, last.ID) || !strings.Contains(out, "io.godwit.progress.v1") {
		t.Errorf("nats stream get does not show the event %s:\n%s", last.ID, out)
	}

	out, err = natsCLI(t, srv.ClientURL(), seed, "pub", "godwit.progress.vma-1.repl-vm-143233-1754407216", "{}")
	if err == nil || !strings.Contains(out, "Permissions Violation for Publish") {
		t.Errorf("nats pub as the observer = %v, want a permissions violation:\n%s", err, out)
	}
	if n := streamMsgs(t, oma, bus.StreamProgress); n != 3 {
		t.Errorf("progress stream holds %d messages after the observer's publish, want 3", n)
	}
}
