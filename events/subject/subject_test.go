package subject_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/godwit/godwit/events/subject"
)

func TestValidID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"moref", "vm-143233", true},
		{"job", "repl-vm-143233-1754407216", true},
		{"underscore", "vma_01", true},
		{"longest", strings.Repeat("a", subject.MaxIDLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", subject.MaxIDLen+1), false},
		{"dot adds a token", "vma1.other", false},
		{"star", "*", false},
		{"gt", ">", false},
		{"star inside", "vma*", false},
		{"space", "vma 1", false},
		{"tab", "vma\t1", false},
		{"newline", "vma\r\nPUB x 1", false},
		{"dollar", "$JS", false},
		{"slash", "a/b", false},
		{"unicode", "vmä", false},
		{"nul", "a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := subject.ValidID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, subject.ErrInvalidID) {
				t.Fatalf("ValidID(%q) = %v, want it to wrap ErrInvalidID", tt.id, err)
			}
		})
	}
}

// builders lists every subject builder with the number of ids it takes.
func builders() map[string]func(ids ...string) (string, error) {
	return map[string]func(ids ...string) (string, error){
		"DiscoverRequest":  func(ids ...string) (string, error) { return subject.DiscoverRequest(ids[0]) },
		"DiscoverResult":   func(ids ...string) (string, error) { return subject.DiscoverResult(ids[0], ids[1]) },
		"ReplicateCommand": func(ids ...string) (string, error) { return subject.ReplicateCommand(ids[0]) },
		"ReplicateCancel":  func(ids ...string) (string, error) { return subject.ReplicateCancel(ids[0]) },
		"Progress":         func(ids ...string) (string, error) { return subject.Progress(ids[0], ids[1]) },
		"Status":           func(ids ...string) (string, error) { return subject.Status(ids[0], ids[1]) },
		"JobCreated":       func(ids ...string) (string, error) { return subject.JobCreated(ids[0], ids[1]) },
		"JobState":         func(ids ...string) (string, error) { return subject.JobState(ids[0], ids[1]) },
		"Heartbeat":        func(ids ...string) (string, error) { return subject.Heartbeat(ids[0]) },
		"Tunnel":           func(ids ...string) (string, error) { return subject.Tunnel(ids[0]) },
		"ExportRequest":    func(ids ...string) (string, error) { return subject.ExportRequest(ids[0], ids[1]) },
		"VerifyRequest":    func(ids ...string) (string, error) { return subject.VerifyRequest(ids[0], ids[1]) },
		"StreamAlert":      func(ids ...string) (string, error) { return subject.StreamAlert(ids[0]) },
		"DiscoverSubmit":   func(ids ...string) (string, error) { return subject.DiscoverSubmit(ids[0]) },
	}
}

func TestBuilders(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"DiscoverRequest":  "godwit.discover.request.vma-1",
		"DiscoverResult":   "godwit.discover.result.vma-1.id-2",
		"ReplicateCommand": "godwit.replicate.command.vma-1",
		"ReplicateCancel":  "godwit.replicate.cancel.vma-1",
		"Progress":         "godwit.progress.vma-1.id-2",
		"Status":           "godwit.status.vma-1.id-2",
		"JobCreated":       "godwit.job.created.vma-1.id-2",
		"JobState":         "godwit.job.state.vma-1.id-2",
		"Heartbeat":        "godwit.vma.heartbeat.vma-1",
		"Tunnel":           "godwit.tunnel.vma-1",
		"ExportRequest":    "godwit.export.request.vma-1.id-2",
		"VerifyRequest":    "godwit.verify.request.vma-1.id-2",
		"StreamAlert":      "godwit.alert.stream.vma-1",
		"DiscoverSubmit":   "godwit.discover.submit.vma-1",
	}
	for name, build := range builders() {
		got, err := build("vma-1", "id-2")
		if err != nil || got != want[name] {
			t.Errorf("%s(vma-1, id-2) = %q, %v, want %q", name, got, err, want[name])
		}
	}
}

// TestNoInjection proves that no id can add, widen or split a token of any
// subject: every builder refuses every hostile id in every position.
func TestNoInjection(t *testing.T) {
	t.Parallel()
	hostile := []string{"", "a.b", ".", "a.", ".a", "*", ">", "a.*", "a.>", "a b", " ", "a\tb", "a\nb", "a\r\n", "ü"}
	for name, build := range builders() {
		for pos := 0; pos < 2; pos++ {
			for _, bad := range hostile {
				ids := []string{"vma-1", "id-2"}
				ids[pos] = bad
				got, err := build(ids...)
				if pos == 1 && got != "" && err == nil && !strings.Contains(got, "id-2") {
					continue // the builder takes one id only: the second is not used
				}
				if err == nil {
					t.Errorf("%s(%q) = %q, want an error", name, ids, got)
					continue
				}
				if !errors.Is(err, subject.ErrInvalidID) {
					t.Errorf("%s(%q) error %v does not wrap ErrInvalidID", name, ids, err)
				}
			}
		}
	}
}

func TestPermissionSubjectsRefuseHostileIDs(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"*", ">", "a.b", "a b", ""} {
		if _, err := subject.VMAPublish(bad); err == nil {
			t.Errorf("VMAPublish(%q) succeeded", bad)
		}
		if _, err := subject.VMASubscribe(bad); err == nil {
			t.Errorf("VMASubscribe(%q) succeeded", bad)
		}
		if _, err := subject.VMACommands(bad); err == nil {
			t.Errorf("VMACommands(%q) succeeded", bad)
		}
		if _, err := subject.InboxPrefix(bad); err == nil {
			t.Errorf("InboxPrefix(%q) succeeded", bad)
		}
	}
}

func TestVMAPublishCarriesOnlyItsID(t *testing.T) {
	t.Parallel()
	subs, err := subject.VMAPublish("vma-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		toks := strings.Split(s, ".")
		if !slices.Contains(toks, "vma-1") {
			t.Errorf("VMAPublish subject %q does not carry the VMA id as a token", s)
		}
		if strings.Contains(s, ">") {
			t.Errorf("VMAPublish subject %q has a full wildcard", s)
		}
	}
}

func TestParseExportRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		subj     string
		vma, job string
		wantErr  error
	}{
		{"built", "godwit.export.request.vma-1.repl-vm-1-2", "vma-1", "repl-vm-1-2", nil},
		{"no job", "godwit.export.request.vma-1", "", "", subject.ErrNotSubject},
		{"empty job", "godwit.export.request.vma-1.", "", "", subject.ErrInvalidID},
		{"extra token", "godwit.export.request.vma-1.job.x", "", "", subject.ErrInvalidID},
		{"wildcard vma", "godwit.export.request.*.job", "", "", subject.ErrInvalidID},
		{"full wildcard", "godwit.export.request.vma-1.>", "", "", subject.ErrInvalidID},
		{"other subject", "godwit.progress.vma-1.job", "", "", subject.ErrNotSubject},
		{"prefix only", "godwit.export.requestx.vma-1.job", "", "", subject.ErrNotSubject},
		{"js api", "$JS.API.STREAM.DELETE.JOBS", "", "", subject.ErrNotSubject},
		{"empty", "", "", "", subject.ErrNotSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vma, job, err := subject.ParseExportRequest(tt.subj)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil) != (err != nil) || vma != tt.vma || job != tt.job {
				t.Errorf("ParseExportRequest(%q) = %q, %q, %v, want %q, %q, %v", tt.subj, vma, job, err, tt.vma, tt.job, tt.wantErr)
			}
		})
	}
	// Every subject ExportRequest builds parses back to its ids.
	subj, err := subject.ExportRequest("vma_2", "job-9")
	if err != nil {
		t.Fatal(err)
	}
	if vma, job, err := subject.ParseExportRequest(subj); err != nil || vma != "vma_2" || job != "job-9" {
		t.Errorf("ParseExportRequest(%q) = %q, %q, %v, want vma_2, job-9", subj, vma, job, err)
	}
}

// TestParseVerifyRequest: a verify request subject parses back to its ids;
// one of another form or with a hostile id does not.
func TestParseVerifyRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		subj     string
		vma, job string
		wantErr  error
	}{
		{"built", "godwit.verify.request.vma-1.repl-vm-1-2", "vma-1", "repl-vm-1-2", nil},
		{"no job", "godwit.verify.request.vma-1", "", "", subject.ErrNotSubject},
		{"extra token", "godwit.verify.request.vma-1.job.x", "", "", subject.ErrInvalidID},
		{"wildcard vma", "godwit.verify.request.*.job", "", "", subject.ErrInvalidID},
		{"export request", "godwit.export.request.vma-1.job", "", "", subject.ErrNotSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vma, job, err := subject.ParseVerifyRequest(tt.subj)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil) != (err != nil) || vma != tt.vma || job != tt.job {
				t.Errorf("ParseVerifyRequest(%q) = %q, %q, %v, want %q, %q, %v", tt.subj, vma, job, err, tt.vma, tt.job, tt.wantErr)
			}
		})
	}
}
