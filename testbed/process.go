package testbed

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
)

// BuildCommand builds the module's command cmd (oma, vma) into dir and
// returns the binary's path.
func BuildCommand(tb testing.TB, dir, cmd string) string {
	tb.Helper()
	bin := filepath.Join(dir, cmd+"-bin")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/godwit/godwit/"+cmd).CombinedOutput(); err != nil {
		tb.Fatalf("build the %s command: %v\n%s", cmd, err, out)
	}
	return bin
}

// Process is one of the module's commands running as a process of its
// own, as in production, so that a test can kill it with SIGKILL.
type Process struct {
	TB testing.TB
	// What names it in the test's messages, such as "the OMA process".
	What string
	Bin  string
	Args []string
	// URL is its API: it serves once URL/api/v1/health answers 200.
	URL string
	// Logs gets its output.
	Logs *testkit.Buffer

	cmd  *exec.Cmd
	done chan error
}

// Start starts the process and waits until its API answers.
func (p *Process) Start() {
	p.TB.Helper()
	p.Launch()
	testkit.Eventually(p.TB, p.What+" serving", func() bool {
		resp, err := http.Get(p.URL + "/api/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Launch starts the process without waiting for its API.
func (p *Process) Launch() {
	p.TB.Helper()
	p.cmd = exec.Command(p.Bin, p.Args...)
	p.cmd.Stdout, p.cmd.Stderr = p.Logs, p.Logs
	if err := p.cmd.Start(); err != nil {
		p.TB.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// Kill kills the process with SIGKILL: nothing of it runs after (an OMA's
// nbdkits exit with it: --exit-with-parent).
func (p *Process) Kill() {
	p.TB.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.TB.Fatal(err)
	}
	err := <-p.done
	p.done <- err
}

// Stop stops the process as an operator does (SIGTERM), or kills it after
// 30 s; stopping one that ended is harmless.
func (p *Process) Stop() {
	if p.cmd == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	}
}
