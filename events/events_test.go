package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
)

func TestNewPayloadKnowsEveryType(t *testing.T) {
	t.Parallel()
	for _, typ := range events.Types() {
		p, ok := events.NewPayload(typ)
		if !ok {
			t.Fatalf("NewPayload(%q) unknown", typ)
		}
		if p.EventType() != typ {
			t.Errorf("NewPayload(%q).EventType() = %q", typ, p.EventType())
		}
	}
	if _, ok := events.NewPayload("io.godwit.nope.v1"); ok {
		t.Error("NewPayload accepted an unknown type")
	}
}

func TestNewAndDecode(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.FixedZone("x", 3600))
	in := &events.Progress{JobID: "repl-vm-1-1754407216", VMAID: "vma-1", Seq: 3, Phase: events.PhaseCopying,
		BytesTotal: 100, BytesDone: 40, Disks: []events.DiskProgress{{Key: 2000, BytesTotal: 100, BytesDone: 40}}}
	ev, err := events.New("/godwit/vma/vma-1", in, now)
	if err != nil {
		t.Fatal(err)
	}
	if ev.SpecVersion != "1.0" || ev.Type != events.TypeProgress || ev.Subject != in.JobID ||
		ev.DataContentType != "application/json" || !ev.Time.Equal(now) || ev.Time.Location() != time.UTC {
		t.Errorf("New = %+v", ev)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, attr := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"} {
		if !bytes.Contains(raw, []byte(`"`+attr+`":`)) {
			t.Errorf("envelope %s lacks %q", raw, attr)
		}
	}
	var back events.Event
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	var out events.Progress
	if err := back.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(*in) {
		t.Errorf("Decode = %+v, want %+v", out, *in)
	}
	if err := back.Decode(&events.Heartbeat{}); !errors.Is(err, events.ErrTypeMismatch) {
		t.Errorf("Decode into the wrong type = %v, want ErrTypeMismatch", err)
	}
}

func TestNewRefusesHostileIDs(t *testing.T) {
	t.Parallel()
	for _, p := range []events.Payload{
		&events.Progress{JobID: "job.>", VMAID: "vma-1"},
		&events.ReplicateCommand{JobID: "j", VMAID: "*"},
		&events.DiscoverResult{RequestID: "r 1", VMAID: "vma-1"},
		&events.Heartbeat{VMAID: "vma.other"},
	} {
		if _, err := events.New("/godwit/test", p, time.Now()); !errors.Is(err, subject.ErrInvalidID) {
			t.Errorf("New(%T) = %v, want ErrInvalidID", p, err)
		}
	}
	if _, err := events.New("", &events.Heartbeat{VMAID: "v"}, time.Now()); err == nil {
		t.Error("New with an empty source succeeded")
	}
}

func TestNewIDIsUUIDv4AndUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := events.NewID()
		if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) || seen[id] {
			t.Fatalf("NewID() = %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

func TestSealedIsRedacted(t *testing.T) {
	t.Parallel()
	s := events.Sealed{Scheme: events.SealScheme, Recipient: "cGs=", Box: "c2VjcmV0Ym94"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "password", s)
	if got := fmt.Sprintf("%v %s %+v", s, s, s) + buf.String(); strings.Contains(got, s.Box) {
		t.Errorf("sealed box printed: %s", got)
	}
}

// TestStdlibOnly keeps events (and subject) free of third-party imports.
func TestStdlibOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".", "./subject").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, "github.com/godwit/godwit/events") {
			t.Errorf("events depends on %s", dep)
		}
	}
}
