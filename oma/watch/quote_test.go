package watch_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/watch"
)

// TestPrinterQuotes: every string a VMA or vCenter sends (a VM name, a
// VMA id, states, an error) reaches the terminal quoted when it holds a
// control or format character, never raw; ordinary ones print as before.
func TestPrinterQuotes(t *testing.T) {
	tests := []struct {
		name string
		in   events.Payload
		want string
	}{
		{"a VM name that sets the window title and clears the screen",
			&events.JobCreated{JobID: "j1", VMAID: "vma-1", VM: events.VMRef{ID: "vm-1", Name: "web\x1b]0;pwned\a\x1b[2J01", Path: "/DC/vm/x"},
				ReplicationType: "initial", State: events.JobPending, CreatedAt: t0, Disks: []events.JobDisk{{Key: 2000, CapacityBytes: 1 << 30}}},
			`09:14:03 job j1 created: "web\x1b]0;pwned\a\x1b[2J01", initial, 1 disk(s), 1.0 GiB, on vma-1`},
		{"a bidi override and a C1 CSI", &events.JobCreated{JobID: "j1", VMAID: "vma-1", VM: events.VMRef{ID: "vm-1", Name: "report\u202efdp.exe\u009b2J"},
			ReplicationType: "initial", CreatedAt: t0},
			`09:14:03 job j1 created: "report\u202efdp.exe\u009b2J", initial, 0 disk(s), 0 B, on vma-1`},
		{"unicode names print as they are", &events.JobCreated{JobID: "j1", VMAID: "vma-1", VM: events.VMRef{ID: "vm-1", Name: "café サーバー"},
			ReplicationType: "initial", CreatedAt: t0},
			`09:14:03 job j1 created: café サーバー, initial, 0 disk(s), 0 B, on vma-1`},
		{"an error that rewrites its line", state("j1", "copying", "failed", 0, "find VM /DC/vm/a\rcompleted: all good\x1b[K"),
			`09:14:03 job j1 failed: "find VM /DC/vm/a\rcompleted: all good\x1b[K"`},
		{"an error on several lines", state("j1", "copying", "failed", 0, "nbdkit:\nline 2"),
			`09:14:03 job j1 failed: "nbdkit:\nline 2"`},
		{"states from a VMA", state("j1", "queued\x1b[1A", "copying\u0085", 0, ""),
			`09:14:03 job j1 "queued\x1b[1A" -> "copying\u0085"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := watch.NewPrinter(&out, time.UTC).Handle(event(t, tt.in)); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != tt.want {
				t.Errorf("line = %s, want %s", got, tt.want)
			}
			if raw := strings.IndexFunc(strings.TrimSuffix(out.String(), "\n"), func(r rune) bool {
				return r < 0x20 || (r >= 0x7f && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
			}); raw >= 0 {
				t.Errorf("line %q holds a control character at %d", out.String(), raw)
			}
		})
	}
}
