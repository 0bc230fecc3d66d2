package testkit_test

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/godwit/godwit/testkit"
)

// TestList finds a child of this process by its pid, parent, group and
// command line, and below this process.
func TestList(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	var got *testkit.Process
	for _, p := range testkit.List() {
		if p.PID == pid {
			got = &p
		}
	}
	if got == nil || got.PPID != os.Getpid() || got.PGID != pid || got.CommandLine() != "sleep 30" {
		t.Fatalf("List() has %+v for the child %d", got, pid)
	}
	found := false
	for _, p := range testkit.Descendants(os.Getpid()) {
		found = found || p.PID == pid
	}
	if !found {
		t.Errorf("Descendants(%d) lacks the child %d", os.Getpid(), pid)
	}
}
