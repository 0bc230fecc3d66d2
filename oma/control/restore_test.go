package control_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
)

// TestRestoreSurvivesABrokenJob: a job whose exports cannot come back
// after a restart fails with the reason, and the OMA starts and serves the
// other jobs' exports.
func TestRestoreSurvivesABrokenJob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(h *harness, j store.Job) error
		why    string
	}{
		{"export dir removed", func(h *harness, j store.Job) error {
			return os.RemoveAll(filepath.Join(h.dir, "exports", j.ID))
		}, "no such file or directory"},
		{"volume dir removed", func(h *harness, j store.Job) error {
			return os.RemoveAll(filepath.Dir(j.Disks[0].Volume))
		}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			conn, _ := h.vma("vma-1")
			h.learn(conn, "vma-1", testVM("vm-1", 1<<20), testVM("vm-2", 1<<20))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var created []store.Job
			for _, vm := range []string{"vm-1", "vm-2"} {
				j, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: vm}, ReplicationType: events.ReplicationInitial})
				if err != nil {
					t.Fatal(err)
				}
				created = append(created, j)
			}
			h.stop()
			if err := tt.break_(h, created[0]); err != nil {
				t.Fatal(err)
			}
			h.start()
			bad, _ := h.ctl.Job(created[0].ID)
			if bad.State != events.JobFailed || !strings.Contains(bad.LastError, tt.why) || !strings.Contains(bad.LastError, created[0].ID) {
				t.Errorf("broken job = %s %q, want failed saying %q", bad.State, bad.LastError, tt.why)
			}
			good, _ := h.ctl.Job(created[1].ID)
			if good.State != events.JobPending {
				t.Errorf("other job = %s, want pending", good.State)
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(good.Disks[0].Export.Port))
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("the other job's export is not served: %v", err)
			}
			c.Close()
			// The failed job no longer blocks its VM.
			if _, err := h.ctl.CreateJob(ctx, jobs.CreateRequest{VM: events.VMRef{ID: "vm-1"}, ReplicationType: events.ReplicationInitial}); err != nil {
				t.Errorf("new job after the failed one: %v", err)
			}
		})
	}
}
