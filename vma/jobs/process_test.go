package jobs_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/testkit"
)

// process is one of this module's commands (oma, vma) running as a
// process of its own, as it runs in production, so that a test can kill it
// with SIGKILL.
type process struct {
	tb   testing.TB
	what string // "the OMA process": names it in the test's messages
	bin  string
	args []string
	url  string // its API: serving once /api/v1/health answers 200
	logs *testkit.Buffer
	cmd  *exec.Cmd
	done chan error
}

// buildCommand builds the module's command cmd (oma, vma) into dir and
// returns the binary's path.
func buildCommand(tb testing.TB, dir, cmd string) string {
	tb.Helper()
	bin := filepath.Join(dir, cmd+"-bin")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/godwit/godwit/"+cmd).CombinedOutput(); err != nil {
		tb.Fatalf("build the %s command: %v\n%s", cmd, err, out)
	}
	return bin
}

// start starts the process and waits until its API answers.
func (p *process) start() {
	p.tb.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	testkit.Eventually(p.tb, p.what+" serving", func() bool {
		resp, err := http.Get(p.url + "/api/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill kills the process with SIGKILL: nothing of it runs after (the
// OMA's nbdkits exit with it: --exit-with-parent).
func (p *process) kill() {
	p.tb.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.tb.Fatal(err)
	}
	<-p.done
}

// stop stops the process as an operator does (SIGTERM), or kills it after 30 s.
func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
