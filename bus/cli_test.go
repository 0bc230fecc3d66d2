package bus_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
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
	for _, s := range []string{"ALERTS", "COMMANDS", "DISCOVERY", "INVENTORY", "JOBS", "PRESENCE", "PROGRESS", "TUNNEL"} {
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

// TestNatsCLIObserverCannotWrite runs, with the real nats CLI as the
// observer, every way to change JetStream it could try, through the gate
// (--js-api-prefix) and straight at $JS.API: each is refused and every
// stream, message and consumer is still there after.
func TestNatsCLIObserverCannotWrite(t *testing.T) {
	testkit.Long(t)
	t.Parallel()
	obs, vma := bustest.NewUser(t), bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{Observers: []string{obs.PublicKey}, VMAs: map[string]string{"vma-1": vma.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 120*time.Second)
	if err := oma.EnsureVMAConsumers(ctx, "vma-1"); err != nil {
		t.Fatal(err)
	}
	if err := oma.EnsureConsumer(ctx, bus.StreamProgress, bus.OMADurable, "godwit.progress.>"); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := oma.Publish(ctx, progress("vma-1", "job-1", seq)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-1", VMAID: "vma-1"}); err != nil {
		t.Fatal(err)
	}
	before := jsState(t, oma)
	seed := obs.SeedFile(t)
	prefix := []string{"--js-api-prefix", bus.ObserverAPIPrefix}
	tests := []struct {
		name string
		args []string
	}{
		{"durable", []string{"consumer", "add", "--pull", "PROGRESS", "squat", "--defaults"}},
		{"squat a VMA's durable", []string{"consumer", "add", "--pull", "COMMANDS", "vma-vma-2", "--filter", "godwit.replicate.command.vma-2", "--defaults"}},
		{"squat a future VMA's name, ephemeral", []string{"consumer", "add", "--pull", "--ephemeral", "--inactive-threshold", "1m", "COMMANDS", "vma-vma-2", "--filter", "godwit.replicate.command.vma-2", "--defaults"}},
		{"squat the OMA's name, ephemeral", []string{"consumer", "add", "--pull", "--ephemeral", "--inactive-threshold", "1m", "JOBS", "oma", "--defaults"}},
		{"push into a stream", []string{"consumer", "add", "PROGRESS", "--target", "godwit.job.created.vma-1.x", "--defaults"}},
		{"push into a stream, named", []string{"consumer", "add", "PROGRESS", "pusher", "--target", "godwit.job.created.vma-1.x", "--defaults"}},
		{"pull a VMA's durable", []string{"consumer", "next", "COMMANDS", "vma-vma-1", "--no-ack"}},
		{"pull the OMA's durable", []string{"consumer", "next", "PROGRESS", "oma", "--no-ack"}},
		{"purge", []string{"stream", "purge", "PROGRESS", "-f"}},
		{"delete a stream", []string{"stream", "rm", "JOBS", "-f"}},
		{"delete a durable", []string{"consumer", "rm", "COMMANDS", "vma-vma-1", "-f"}},
		{"delete a message", []string{"stream", "rmm", "PROGRESS", "1", "-f"}},
		{"edit a stream", []string{"stream", "edit", "PROGRESS", "--max-msgs", "1", "-f"}},
		{"publish into a stream", []string{"pub", "godwit.job.created.vma-1.x", "{}"}},
		{"gate answer into a stream", []string{"pub", bus.ObserverAPIPrefix + ".STREAM.INFO.PROGRESS", "", "--reply", "godwit.job.created.vma-1.x"}},
		{"api answer into a stream", []string{"pub", "$JS.API.STREAM.INFO.PROGRESS", "", "--reply", "godwit.job.created.vma-1.x"}},
	}
	for _, tt := range tests {
		for _, mode := range []string{"gate", "direct"} {
			args := append([]string{"--timeout", "1s"}, tt.args...) // a refusal that gets no answer waits it out
			if mode == "gate" {
				args = append(prefix, args...)
			}
			out, err := natsCLI(t, srv.ClientURL(), seed, args...)
			// A pub cannot fail at the CLI; a refused pull shows its 409.
			refused := err != nil || tt.args[0] == "pub" || strings.Contains(out, "not for observers")
			if !refused {
				t.Errorf("%s (%s): nats %s succeeded:\n%s", tt.name, mode, strings.Join(args, " "), out)
			}
			if after := jsState(t, oma); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("%s (%s): nats %s changed JetStream:\nbefore %v\nafter  %v\n%s", tt.name, mode, strings.Join(args, " "), before, after, out)
			}
		}
	}
	// Nothing was delivered to the durables meanwhile.
	for _, c := range []struct{ stream, name string }{{bus.StreamCommands, bus.VMADurable("vma-1")}, {bus.StreamProgress, bus.OMADurable}} {
		cons, err := oma.JetStream().Consumer(ctx, c.stream, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if info := cons.CachedInfo(); info.Delivered.Stream != 0 || info.NumAckPending != 0 {
			t.Errorf("durable %s on %s: delivered %d, %d awaiting ack; want nothing taken", c.name, c.stream, info.Delivered.Stream, info.NumAckPending)
		}
	}
}

// TestNatsCLIObserverReplays replays with the real nats CLI as the
// observer: from a sequence, from a time, the last event, and live.
func TestNatsCLIObserverReplays(t *testing.T) {
	t.Parallel()
	obs := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{Observers: []string{obs.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 60*time.Second)
	ids := map[uint64]string{}
	for seq := uint64(1); seq <= 3; seq++ {
		ev, err := oma.Publish(ctx, progress("vma-1", "job-1", seq))
		if err != nil {
			t.Fatal(err)
		}
		ids[seq] = ev.ID
	}
	seed := obs.SeedFile(t)
	observe := func(args ...string) string {
		t.Helper()
		out, err := natsCLI(t, srv.ClientURL(), seed, append([]string{"--js-api-prefix", bus.ObserverAPIPrefix}, args...)...)
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	tests := []struct {
		name      string
		args      []string
		want, not []uint64
	}{
		{"from a sequence", []string{"sub", "godwit.progress.>", "--start-sequence", "2", "--count=2"}, []uint64{2, 3}, []uint64{1}},
		{"from a time", []string{"sub", "godwit.progress.>", "--since", "1h", "--count=3"}, []uint64{1, 2, 3}, nil},
		{"all", []string{"sub", "godwit.progress.>", "--all", "--count=3"}, []uint64{1, 2, 3}, nil},
		{"last", []string{"sub", "godwit.progress.>", "--last", "--count=1"}, []uint64{3}, []uint64{1, 2}},
		{"stream get", []string{"stream", "get", "PROGRESS", "--last-for", "godwit.progress.vma-1.job-1"}, []uint64{3}, nil},
		{"stream get by sequence", []string{"stream", "get", "PROGRESS", "1"}, []uint64{1}, nil},
	}
	for _, tt := range tests {
		out := observe(tt.args...)
		for _, seq := range tt.want {
			if !strings.Contains(out, ids[seq]) {
				t.Errorf("%s: nats %s does not show event %d (%s):\n%s", tt.name, strings.Join(tt.args, " "), seq, ids[seq], out)
			}
		}
		for _, seq := range tt.not {
			if strings.Contains(out, ids[seq]) {
				t.Errorf("%s: nats %s shows event %d:\n%s", tt.name, strings.Join(tt.args, " "), seq, out)
			}
		}
	}

	// Live: the CLI waits for one event; publish until it has seen one.
	bin, err := exec.LookPath("nats")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "--no-context", "--server", srv.ClientURL(), "--nkey", seed, "sub", "godwit.>", "--count=1")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out testkit.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var live string
	for seq := uint64(4); live == ""; seq++ {
		ev, err := oma.Publish(ctx, progress("vma-1", "job-1", seq))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("nats sub godwit.>: %v\n%s", err, out.String())
			}
			live = out.String()
			if !strings.Contains(live, "godwit.progress.vma-1.job-1") {
				t.Errorf("nats sub godwit.> shows no live event (last %s):\n%s", ev.ID, live)
			}
		case <-time.After(100 * time.Millisecond): // not yet subscribed: publish again
		case <-ctx.Done():
			t.Fatalf("nats sub godwit.> saw nothing live:\n%s", out.String())
		}
	}
}
