// Package e2e holds the end-to-end test of the newcomer's workflow: the
// stack `make run` brings up (scripts/dev-stack.sh: the simulated vCenter,
// the OMA, a real OpenSSH sshd and the VMA through its SSH tunnel), the
// walkthrough `make demo` runs against it (scripts/demo.sh), and the nats
// CLI watching the progress stream as the observer.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
)

// TestDemo runs `make run` and `make demo` as a newcomer would, on ports
// of its own: the seed's four steps through the tunnel, every target
// compared with its source, an incremental cycle, both verified; the nats
// CLI sees the progress of both jobs; the terminal shows each component
// ready and each job's end; Ctrl-C stops everything; a second `make run`
// finds the jobs again.
func TestDemo(t *testing.T) {
	testkit.Long(t)
	for _, tool := range []string{"nats", "/usr/sbin/sshd", "ssh-keygen", "nbdkit", "curl", "jq", "numfmt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make test installs what the tests need): %v", tool, err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build(t, root, bin)

	first, _ := testkit.FreePorts(t, 16)
	port := func(i int) string { return strconv.Itoa(first + i) }
	env := append(os.Environ(), "BIN="+bin, "DATA="+filepath.Join(dir, "data"), "VAR="+filepath.Join(dir, "var"),
		"VCSIM_PORT="+port(0), "OMA_PORT="+port(1), "NATS_PORT="+port(2), "SSHD_PORT="+port(3),
		"VMA_PORT="+port(4), "VMA_TUNNEL_PORT="+port(5), "NBD_PORTS="+port(6)+"-"+port(15))
	envFile := filepath.Join(dir, "var", "dev.env")

	stack := startStack(t, root, env, envFile)
	dev := readEnv(t, envFile)
	for key, want := range map[string]string{"OMA_URL": "http://localhost:" + port(1), "VMA_URL": "http://localhost:" + port(5),
		"VCENTER": "127.0.0.1:" + port(0), "VCENTER_USER": "administrator@vsphere.local", "VCENTER_PASSWORD": "godwit-dev",
		"NATS_URL": "nats://127.0.0.1:" + port(2)} {
		if dev[key] != want {
			t.Errorf("dev.env %s = %q, want %q", key, dev[key], want)
		}
	}
	if info, err := os.Stat(envFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("dev.env: %v, mode %v; want 0600 (it holds the token)", err, info.Mode().Perm())
	}

	// The observer watches the progress stream with the nats CLI, from its
	// first message on: nothing is missed however late it subscribes.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var progress testkit.Buffer
	natsSub := exec.CommandContext(watchCtx, "nats", "--server", dev["NATS_URL"], "--nkey", dev["NATS_OBSERVER_NKEY"],
		"--js-api-prefix", dev["NATS_OBSERVER_JS_API_PREFIX"], "sub", "--raw", "--all", "--stream", "PROGRESS", "godwit.progress.>")
	natsSub.Stdout, natsSub.Stderr = &progress, &progress
	if err := natsSub.Start(); err != nil {
		t.Fatal(err)
	}
	defer natsSub.Wait()

	demo := exec.Command(filepath.Join(root, "scripts", "demo.sh"))
	demo.Env = env
	out, err := demo.CombinedOutput()
	t.Logf("make demo:\n%s", out)
	if err != nil {
		t.Fatalf("make demo: %v", err)
	}
	jobs := regexp.MustCompile(`(?m)^   job (repl-\S+):`).FindAllStringSubmatch(string(out), -1)
	if len(jobs) != 2 {
		t.Fatalf("make demo named %d jobs, want the initial and the incremental", len(jobs))
	}
	initial, incremental := jobs[0][1], jobs[1][1]
	cycles, plan, _ := strings.Cut(string(out), "\n== a migration plan")
	if n := strings.Count(cycles, "\nsame: "); n != 4 {
		t.Errorf("make demo compared %d disks equal, want 2 disks x 2 cycles", n)
	}
	if !strings.Contains(string(out), "both verified, every disk equal to its source") {
		t.Error("make demo did not end with both cycles verified")
	}
	if n := strings.Count(plan, "\nsame: "); n < 3 {
		t.Errorf("make demo compared %d disks of the plan's VMs equal, want one or more for each of 3", n)
	}
	if !regexp.MustCompile(`plan demo: 3 VMs, [0-9]+ scheduled syncs, every replica equal to its source`).Match(out) {
		t.Error("make demo did not end with the plan's replicas equal to their sources")
	}

	// The bytes: each job as the OMA has it, the incremental far smaller.
	initialView, incrementalView := job(t, dev, initial), job(t, dev, incremental)
	for _, j := range []jobView{initialView, incrementalView} {
		if j.State != events.JobCompleted || !j.Verified || j.BytesDone == 0 || j.BytesDone != j.BytesTotal {
			t.Errorf("job %s = %+v, want completed, verified, every byte done", j.ID, j)
		}
	}
	if incrementalView.Type != "incremental" || incrementalView.BytesDone >= initialView.BytesDone {
		t.Errorf("incremental job %s moved %d bytes, the initial %d", incremental, incrementalView.BytesDone, initialView.BytesDone)
	}

	// The nats CLI saw both jobs' progress, up to 100%.
	testkit.Eventually(t, "both jobs at 100% on the nats CLI", func() bool {
		done := map[string]bool{}
		for _, ev := range rawEvents(progress.String()) {
			var p events.Progress
			if ev.Type == events.TypeProgress && ev.Decode(&p) == nil && p.Percent == 100 {
				done[p.JobID] = true
			}
		}
		return done[initial] && done[incremental]
	})
	stopWatch()

	// The observer reads the plan's events back with the nats CLI, as the
	// README shows: the last sync scheduled of plan demo, its second.
	get := exec.Command("nats", "--server", dev["NATS_URL"], "--nkey", dev["NATS_OBSERVER_NKEY"], "--js-api-prefix", dev["NATS_OBSERVER_JS_API_PREFIX"],
		"stream", "get", "PLANS", "--last-for", "godwit.plan.scheduled.demo")
	last, err := get.CombinedOutput()
	var scheduled events.PlanSyncScheduled
	if evs := rawEvents(string(last)); err != nil || len(evs) != 1 || evs[0].Decode(&scheduled) != nil || scheduled.Plan != "demo" || scheduled.Sync < 2 {
		t.Errorf("nats stream get PLANS --last-for godwit.plan.scheduled.demo = %v:\n%s", err, last)
	}

	// The terminal: each component ready, then one line per job event.
	// oma watch prints from the bus on its own time: on a busy machine its
	// last lines come after the API already says completed.
	testkit.Eventually(t, "oma watch printing both jobs completed", func() bool {
		term := stack.out.String()
		return strings.Contains(term, "job "+initial+" completed: ") && strings.Contains(term, "job "+incremental+" completed: ") &&
			strings.Contains(term, "plan demo sync 2 (schedule)")
	})
	term := stack.out.String()
	for _, want := range []string{"vcsim ready:", "oma   ready:", "sshd  ready:", "vma   ready:", "API token",
		"job " + initial + " created: PGWINTESTBIOS, initial", "job " + initial + " completed: ",
		"job " + incremental + " completed: ", "nats --nkey", "plan demo created: 3 VM(s) of dev in 2 wave(s), every 10s",
		"plan demo sync 1 (schedule)", "synced: incremental"} {
		if !strings.Contains(term, want) {
			t.Errorf("the terminal of make run has no %q:\n%s", want, term)
		}
	}
	if !regexp.MustCompile(`job ` + initial + ` completed: [0-9.]+ [KM]iB copied in .* \(.*/s\), verified`).MatchString(term) {
		t.Errorf("no completed line with bytes, time, rate and verification for %s:\n%s", initial, term)
	}
	if strings.Contains(term, "Starting nats-server") || strings.Contains(term, "level=INFO") {
		t.Errorf("the terminal holds the components' logs:\n%s", term)
	}
	if logs, err := os.ReadFile(filepath.Join(dir, "data", "logs", "oma.log")); err != nil || !bytes.Contains(logs, []byte("Starting nats-server")) {
		t.Errorf("data/logs/oma.log has no nats-server banner (err %v)", err)
	}

	// Ctrl-C stops everything; a second make run finds the jobs again.
	stack.interrupt(t)
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dev.env is still there after the stack stopped: %v", err)
	}
	stack = startStack(t, root, env, envFile)
	dev = readEnv(t, envFile)
	if again := job(t, dev, initial); again.State != events.JobCompleted || again.BytesDone != initialView.BytesDone {
		t.Errorf("after a restart, job %s = %+v, want it as it was", initial, again)
	}
	stack.interrupt(t)
}

// build compiles the three binaries make run uses.
func build(t *testing.T, root, bin string) {
	t.Helper()
	for pkg, name := range map[string]string{"./oma": "oma", "./vma": "vma", "./vma/vcsim/cmd/vcsim": "vcsim"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
}

// stack is a running scripts/dev-stack.sh.
type stack struct {
	cmd  *exec.Cmd
	out  *testkit.Buffer
	done chan error
}

// startStack starts make run's script and waits for it to write dev.env.
func startStack(t *testing.T, root string, env []string, envFile string) *stack {
	t.Helper()
	s := &stack{cmd: exec.Command(filepath.Join(root, "scripts", "dev-stack.sh")), out: &testkit.Buffer{}, done: make(chan error, 1)}
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = env, s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	})
	deadline := time.Now().Add(testkit.Wait(t)) // it builds the binaries first: minutes on a loaded machine
	for {
		if _, err := os.Stat(envFile); err == nil {
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("make run stopped: %v\n%s", err, s.out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run not up:\n%s", s.out)
		}
	}
}

// interrupt sends Ctrl-C's SIGINT and checks that the script and every
// process it started end, cleanly.
func (s *stack) interrupt(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("make run after Ctrl-C: %v\n%s", err, s.out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("make run still running a minute after Ctrl-C:\n%s", s.out)
	}
	for deadline := time.Now().Add(30 * time.Second); !errors.Is(syscall.Kill(-s.cmd.Process.Pid, 0), syscall.ESRCH); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after make run ended, processes of its group remain:\n%s", strings.Join(group(s.cmd.Process.Pid), "\n"))
		}
	}
	if !strings.Contains(s.out.String(), "stopped") {
		t.Errorf("make run did not say it stopped:\n%s", s.out)
	}
}

// group lists the pid and command line of every process in process group pgid.
func group(pgid int) []string {
	var out []string
	for _, p := range testkit.List() {
		if p.PGID == pgid {
			out = append(out, fmt.Sprintf("%d (parent %d) %s", p.PID, p.PPID, p.CommandLine()))
		}
	}
	return out
}

// readEnv reads the KEY=VALUE lines of dev.env.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

// jobView is what the test reads of the OMA's job.
type jobView struct {
	ID         string `json:"job_id"`
	Type       string `json:"replication_type"`
	State      string `json:"state"`
	Verified   bool   `json:"verified"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
}

func job(t *testing.T, dev map[string]string, id string) jobView {
	t.Helper()
	var j jobView
	if code := testbed.Do(t, http.MethodGet, dev["OMA_URL"]+"/api/v1/replications/"+id, dev["OMA_TOKEN"], nil, &j); code != http.StatusOK {
		t.Fatalf("GET job %s = %d", id, code)
	}
	return j
}

// rawEvents decodes the events `nats sub --raw` printed, one per line.
func rawEvents(out string) []events.Event {
	var evs []events.Event
	for _, line := range strings.Split(out, "\n") {
		var ev events.Event
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}
