package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testkit"
)

type problem = api.Problem

type job struct {
	JobID              string `json:"job_id"`
	VMAID              string `json:"vma_id"`
	State              string `json:"state"`
	ReplicationType    string `json:"replication_type"`
	BaseJobID          string `json:"base_job_id"`
	BytesTotal         int64  `json:"bytes_total"`
	BytesDone          int64  `json:"bytes_done"`
	RateBytesPerSecond int64  `json:"rate_bytes_per_second"`
	ETASeconds         *int64 `json:"eta_seconds"`
	LastError          string `json:"last_error"`
	SourceVM           struct {
		ID, Name, Path string
	} `json:"source_vm"`
	Disks []struct {
		Key           int32         `json:"key"`
		CapacityBytes int64         `json:"capacity_bytes"`
		Export        events.Export `json:"export"`
		NBDURL        string        `json:"nbd_url"`
		VolumePath    string        `json:"volume_path"`
		BytesDone     int64         `json:"bytes_done"`
		ChangeID      string        `json:"change_id"`
		BaseChangeID  string        `json:"base_change_id"`
	} `json:"disks"`
}

func createBody(vmID, typ string) map[string]any {
	return map[string]any{"source_vm": map[string]any{"id": vmID, "name": "VM-" + vmID, "path": "/DatabanxDC/vm/VM-" + vmID}, "replication_type": typ}
}

func TestHealthAndAuth(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 1)
	var h struct {
		Status        string   `json:"status"`
		Version       string   `json:"version"`
		UptimeSeconds *int64   `json:"uptime_seconds"`
		Connected     []string `json:"connected_vmas"`
		NATS          struct {
			Connected bool `json:"connected"`
			JetStream bool `json:"jetstream"`
		} `json:"nats"`
		Nbdkit *struct {
			Restarts *uint64 `json:"restarts"`
		} `json:"nbdkit"`
	}
	if code := o.doRaw(http.MethodGet, "/api/v1/health", "Bearer "+o.token, nil, &h); code != http.StatusOK {
		t.Fatalf("health = %d", code)
	}
	if h.Status != "ok" || h.Version == "" || h.UptimeSeconds == nil || !h.NATS.Connected || !h.NATS.JetStream || h.Connected == nil ||
		h.Nbdkit == nil || h.Nbdkit.Restarts == nil || *h.Nbdkit.Restarts != 0 {
		t.Errorf("health = %+v", h)
	}
	o.addVMA("vma-1")
	o.doRaw(http.MethodGet, "/api/v1/health", "Bearer "+o.token, nil, &h)
	if len(h.Connected) != 1 || h.Connected[0] != "vma-1" {
		t.Errorf("connected VMAs = %v, want [vma-1]", h.Connected)
	}

	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/v1/replications"}, {"POST", "/api/v1/replications"}, {"GET", "/api/v1/replications/x"},
		{"DELETE", "/api/v1/replications/x"}, {"POST", "/api/v1/replications/x/start"}, {"POST", "/api/v1/discover"},
		{"GET", "/api/v1/vms"}, {"GET", "/api/v1/vmas"}, {"POST", "/api/v1/vmas"},
		{"POST", "/api/v1/tokens"}, {"GET", "/api/v1/tokens"}, {"DELETE", "/api/v1/tokens/test"},
	} {
		for _, auth := range []string{"", "Bearer ", "Bearer gwt_wrong", "Basic dXNlcjpwYXNz", o.token} {
			var p problem
			if code := o.doRaw(ep.method, ep.path, auth, []byte(`{}`), &p); code != http.StatusUnauthorized || p.Status != 401 || p.Field != "Authorization" {
				t.Errorf("%s %s with %q = %d %+v, want 401", ep.method, ep.path, auth, code, p)
			}
		}
	}
}

func TestCreateReplicationRejectsBadInput(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20))
	huge := `{"source_vm":{"id":"vm-1","name":"` + strings.Repeat("x", 1<<20) + `"},"replication_type":"initial"}`
	tests := []struct {
		name   string
		body   string
		status int
		field  string
		detail string
	}{
		{"malformed", `{"source_vm":`, 400, "", "malformed JSON"},
		{"not an object", `[1,2]`, 400, "", ""},
		{"empty", ``, 400, "", "empty request body"},
		{"too big", huge, 413, "", "larger than"},
		{"trailing", `{"source_vm":{"id":"vm-1"},"replication_type":"initial"} {}`, 400, "", "more than one"},
		{"unknown field", `{"source_vm":{"id":"vm-1"},"replication_type":"initial","colour":"red"}`, 400, "colour", "unknown field"},
		{"unknown nested field", `{"source_vm":{"id":"vm-1","os":"x"},"replication_type":"initial"}`, 400, "source_vm.os", "unknown field"},
		{"missing source_vm", `{"replication_type":"initial"}`, 400, "source_vm", "required"},
		{"missing id", `{"source_vm":{"name":"x"},"replication_type":"initial"}`, 400, "source_vm.id", "required"},
		{"id wrong type", `{"source_vm":{"id":42},"replication_type":"initial"}`, 400, "source_vm.id", "string"},
		{"missing type", `{"source_vm":{"id":"vm-1"}}`, 400, "replication_type", "required"},
		{"unknown type", `{"source_vm":{"id":"vm-1"},"replication_type":"full"}`, 400, "replication_type", "initial or incremental"},
		{"unknown vm", `{"source_vm":{"id":"vm-404"},"replication_type":"initial"}`, 404, "source_vm.id", "discover it first"},
		{"unknown vm at vma", `{"source_vm":{"id":"vm-1"},"replication_type":"initial","vma_id":"vma-2"}`, 404, "source_vm.id", "discover"},
		{"incremental without base", `{"source_vm":{"id":"vm-1"},"replication_type":"incremental"}`, 409, "replication_type", "initial replication first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p problem
			code := o.doRaw(http.MethodPost, "/api/v1/replications", "Bearer "+o.token, []byte(tt.body), &p)
			if code != tt.status || p.Status != tt.status || p.Field != tt.field || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("POST %.80s = %d %+v, want %d field %q detail ~%q", tt.body, code, p, tt.status, tt.field, tt.detail)
			}
		})
	}
	var p problem
	if code := o.doRaw(http.MethodPost, "/api/v1/replications", "Bearer "+o.token, []byte(`{}`), &p); code != 400 {
		t.Errorf("empty object = %d", code)
	}
	var list struct{ Replications []job }
	o.do("GET", "/api/v1/replications", nil, &list)
	if len(list.Replications) != 0 {
		t.Errorf("rejected requests stored jobs: %+v", list.Replications)
	}
	if _, err := os.Stat(o.dir + "/exports"); err == nil {
		t.Error("rejected requests prepared exports")
	}
	// A body that is not JSON is refused, curl's default content type too.
	for ct, want := range map[string]int{"application/x-www-form-urlencoded": 415, "text/xml": 415, "application/json; charset=utf-8": 404} {
		req, _ := http.NewRequest("POST", o.url+"/api/v1/replications", strings.NewReader(`{"source_vm":{"id":"vm-9"},"replication_type":"initial"}`))
		req.Header.Set("Authorization", "Bearer "+o.token)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST as %s = %d, want %d", ct, resp.StatusCode, want)
		}
	}
	// Other endpoints name their fields too.
	for _, c := range []struct {
		path, body, field string
		status            int
	}{
		{"/api/v1/replications?state=dozing", "", "state", 400},
		{"/api/v1/replications?colour=red", "", "colour", 400},
		{"/api/v1/replications/nope", "", "id", 404},
	} {
		var p problem
		if code := o.do("GET", c.path, nil, &p); code != c.status || p.Field != c.field {
			t.Errorf("GET %s = %d %+v", c.path, code, p)
		}
	}
}

// nbdinfoSize returns the size nbdinfo reports for an export URL.
func nbdinfoSize(t *testing.T, url string) int64 {
	t.Helper()
	out, err := exec.Command("nbdinfo", "--size", url).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --size %s: %v\n%s", url, err, out)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("nbdinfo --size %s = %q", url, out)
	}
	return n
}

func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// jobEvents returns the lifecycle events of a job from the JOBS stream.
func jobEvents(t *testing.T, o *omaUnderTest, jobID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := o.conn.JetStream()
	cons, err := js.OrderedConsumer(ctx, bus.StreamJobs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"godwit.job.*.*." + jobID}})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, bus.StreamJobs)
	info, _ := s.Info(ctx)
	var out []string
	if info.State.Msgs == 0 {
		return nil
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		var ev events.Event
		_ = json.Unmarshal(m.Data(), &ev)
		switch ev.Type {
		case events.TypeJobCreated:
			out = append(out, "created")
		case events.TypeJobStateChanged:
			var sc events.JobStateChanged
			_ = ev.Decode(&sc)
			out = append(out, sc.From+">"+sc.To)
		}
	}
	return out
}

// TestReplicationLifecycle drives a job through the whole protocol: create
// (exports served by nbdkit, written with nbdcopy), start (a sealed command
// the VMA opens), export allocation, progress, completion with change ids,
// late and duplicate events, and an incremental job on the same volumes.
func TestReplicationLifecycle(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	v := o.addVMA("vma-1")
	const size0, size1 = 4 << 20, 8 << 20
	o.learn(v, testVM("vm-143233", size0, size1))

	before := time.Now().Unix()
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-143233", "initial"), &j); code != http.StatusCreated {
		t.Fatalf("create = %d %+v", code, j)
	}
	m := regexp.MustCompile(`^repl-vm-143233-(\d+)$`).FindStringSubmatch(j.JobID)
	if m == nil {
		t.Fatalf("job id %q not in the form repl-<vm id>-<unix seconds>", j.JobID)
	}
	if sec, _ := strconv.ParseInt(m[1], 10, 64); sec < before || sec > time.Now().Unix()+1 {
		t.Errorf("job id seconds %d not now", sec)
	}
	if j.State != "pending" || j.VMAID != "vma-1" || len(j.Disks) != 2 || j.Disks[0].CapacityBytes != size0 || j.Disks[1].CapacityBytes != size1 {
		t.Fatalf("created job = %+v", j)
	}
	port := j.Disks[0].Export.Port
	if port < o.FirstPort || port > o.LastPort || j.Disks[1].Export.Port != port || j.Disks[0].Export.Host != "127.0.0.1" {
		t.Errorf("exports %+v not on one pool port", j.Disks)
	}
	for i, d := range j.Disks {
		if got := nbdinfoSize(t, d.NBDURL); got != []int64{size0, size1}[i] {
			t.Errorf("export %s size = %d", d.NBDURL, got)
		}
	}
	// Bytes written through the export land in the volume file.
	src := o.dir + "/src.raw"
	data := make([]byte, size0)
	_, _ = rand.Read(data[:size0/4])
	_ = os.WriteFile(src, data, 0o600)
	if out, err := exec.Command("nbdcopy", src, j.Disks[0].NBDURL).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, out)
	}
	vol, err := os.ReadFile(j.Disks[0].VolumePath)
	if err != nil || !bytes.Equal(vol, data) {
		t.Fatalf("volume file differs from what nbdcopy wrote (%v)", err)
	}

	var p problem
	if code := o.do("POST", "/api/v1/replications", createBody("vm-143233", "initial"), &p); code != 409 || !strings.Contains(p.Detail, j.JobID) {
		t.Errorf("second job for an active VM = %d %+v, want 409", code, p)
	}

	// Start: the command reaches the VMA with the password sealed to it.
	if code := o.do("POST", "/api/v1/replications/"+j.JobID+"/start", map[string]string{"username": "administrator@vsphere.local", "password": "s3cret!"}, &j); code != 202 || j.State != "queued" {
		t.Fatalf("start = %d %+v", code, j)
	}
	if code := o.do("POST", "/api/v1/replications/"+j.JobID+"/start", map[string]string{"username": "u", "password": "p"}, &p); code != 409 {
		t.Errorf("second start = %d, want 409", code)
	}
	cmd := receiveCommand(t, v)
	rc, ok := cmd.(*events.ReplicateCommand)
	if !ok || rc.JobID != j.JobID || rc.VCenter != "vcenter.test" || rc.VMPaths[0] != "/DatabanxDC/vm/VM-vm-143233" || rc.ReplicationType != "initial" {
		t.Fatalf("command = %+v", cmd)
	}
	if pw, err := seal.Open(v.key, rc.Password); err != nil || string(pw) != "s3cret!" {
		t.Fatalf("sealed password opens to %q, %v", pw, err)
	}
	assertNotInStreams(t, o, "s3cret!")

	// The VMA asks where to write.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var alloc events.ExportAllocation
	exportSubj, _ := subject.ExportRequest("vma-1", j.JobID)
	if err := v.conn.Request(ctx, exportSubj, struct{}{}, &alloc); err != nil || len(alloc.Disks) != 2 || alloc.Disks[1].Export.Port != port {
		t.Fatalf("export allocation = %+v, %v", alloc, err)
	}
	// Another VMA asking for this job is answered as for a job that does
	// not exist, in words the VMA can show as they are.
	v2 := o.addVMA("vma-2")
	for job, want := range map[string]string{
		j.JobID:     fmt.Sprintf("no replication job %q for VMA vma-2", j.JobID),
		"repl-nope": `no replication job "repl-nope" for VMA vma-2`,
	} {
		var re *bus.RemoteError
		subj, _ := subject.ExportRequest("vma-2", job)
		if err := v2.conn.Request(ctx, subj, struct{}{}, &alloc); !errors.As(err, &re) || re.Code != bus.CodeNotFound || re.Message != want {
			t.Errorf("vma-2's export request for %s = %v, want %s %q", job, err, bus.CodeNotFound, want)
		}
	}

	// Progress, out of order and repeated.
	prog := func(seq uint64, phase string, done int64) *events.Progress {
		return &events.Progress{JobID: j.JobID, VMAID: "vma-1", Seq: seq, Phase: phase, BytesTotal: size0 + size1, BytesDone: done,
			RateBytesPerSecond: 1 << 20, Disks: []events.DiskProgress{{Key: 2000, BytesTotal: size0, BytesDone: min(done, size0)}}}
	}
	v.publish(t, &events.ReplicationStatus{JobID: j.JobID, VMAID: "vma-1", Seq: 1, State: "accepted"})
	v.publish(t, prog(2, "snapshotting", 0))
	v.publish(t, prog(5, "copying", 6<<20))
	v.publish(t, prog(4, "copying", 3<<20))  // late
	v.publish(t, prog(3, "snapshotting", 1)) // later still
	testkit.Eventually(t, "copying at 6 MiB", func() bool {
		o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
		return j.State == "copying" && j.BytesDone == 6<<20
	})
	time.Sleep(100 * time.Millisecond) // let the late events arrive
	o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
	if j.State != "copying" || j.BytesDone != 6<<20 || j.ETASeconds == nil || *j.ETASeconds != 6 {
		t.Errorf("after late events: %+v (eta %v)", j, j.ETASeconds)
	}
	v.publish(t, &events.ReplicationStatus{JobID: j.JobID, VMAID: "vma-1", Seq: 7, State: "completed", BytesTransferred: size0 + size1,
		Disks: []events.DiskChange{{Key: 2000, ChangeID: "52 3c-1a/10"}, {Key: 2001, ChangeID: "52 3c-1b/11"}}})
	testkit.Eventually(t, "completed", func() bool {
		o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
		return j.State == "completed"
	})
	if j.Disks[0].ChangeID != "52 3c-1a/10" || j.Disks[1].ChangeID != "52 3c-1b/11" || j.BytesDone != size0+size1 {
		t.Errorf("completed job = %+v", j)
	}
	testkit.Eventually(t, "export released", func() bool { return !portOpen(port) })
	// News after the end changes nothing.
	v.publish(t, prog(8, "copying", 1))
	v.publish(t, &events.ReplicationStatus{JobID: j.JobID, VMAID: "vma-1", Seq: 9, State: "failed", Error: &events.Failure{Code: "internal", Message: "late"}})
	time.Sleep(200 * time.Millisecond)
	o.do("GET", "/api/v1/replications/"+j.JobID, nil, &j)
	if j.State != "completed" || j.LastError != "" {
		t.Errorf("a completed job changed: %+v", j)
	}
	want := []string{"created", "pending>queued", "queued>snapshotting", "snapshotting>copying", "copying>completed"}
	testkit.Eventually(t, "lifecycle events", func() bool { return fmt.Sprint(jobEvents(t, o, j.JobID)) == fmt.Sprint(want) })

	// An incremental job builds on the change ids, on the same volumes.
	var inc job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-143233", "incremental"), &inc); code != 201 {
		t.Fatalf("incremental = %d %+v", code, inc)
	}
	if inc.BaseJobID != j.JobID || inc.Disks[0].BaseChangeID != "52 3c-1a/10" || inc.Disks[1].BaseChangeID != "52 3c-1b/11" {
		t.Errorf("incremental job = %+v", inc)
	}
	vol, _ = os.ReadFile(inc.Disks[0].VolumePath)
	if !bytes.Equal(vol, data) {
		t.Error("an incremental job discarded the volume")
	}
	var list struct{ Replications []job }
	o.do("GET", "/api/v1/replications?vm=vm-143233&state=pending", nil, &list)
	if len(list.Replications) != 1 || list.Replications[0].JobID != inc.JobID {
		t.Errorf("filtered list = %+v", list.Replications)
	}
}

// receiveCommand reads the next command from the VMA's durable consumer.
func receiveCommand(t *testing.T, v *vma) events.Payload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got := make(chan events.Payload, 1)
	go func() {
		_ = v.conn.Consume(ctx, bus.StreamCommands, bus.VMADurable(v.id), func(_ context.Context, _ events.Event, p events.Payload) error {
			select {
			case got <- p:
				cancel()
			default:
			}
			return nil
		})
	}()
	select {
	case p := <-got:
		return p
	case <-ctx.Done():
		// The handler cancels ctx once it handed the command over: both
		// may be ready by the time this select looks.
		select {
		case p := <-got:
			return p
		default:
		}
		t.Fatal("no command reached the VMA")
		return nil
	}
}

// assertNotInStreams checks that secret appears in no stored message.
func assertNotInStreams(t *testing.T, o *omaUnderTest, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range bus.StreamConfigs(bus.StreamLimits{}) {
		name := cfg.Name
		s, err := o.conn.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Info(ctx)
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err == nil && bytes.Contains(m.Data, []byte(secret)) {
				t.Errorf("stream %s message %d holds the secret", name, seq)
			}
		}
	}
	db, _ := os.ReadFile(o.dir + "/state.db")
	if bytes.Contains(db, []byte(secret)) {
		t.Error("the state database holds the secret")
	}
}
