package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestOperatorCommands runs oma jobs and oma vms against a real OMA (with
// a VMA that discovered a simulated vCenter): the inventory, a job listed,
// shown and cancelled, with the token from the OMA's data dir or from
// $GODWIT_TOKEN; and each way of getting it wrong is an error that says
// what to do.
func TestOperatorCommands(t *testing.T) {
	sim := testbed.StartSim(t, vcsim.Config{VMs: 1})
	o := testbed.StartOMA(t, testbed.OMAConfig{})
	testbed.StartVMA(t, o, testbed.VMAConfig{VCenterCAFile: sim.CAFile})
	vms := o.Discover(map[string]any{"vcenter": sim.Host, "username": sim.Username,
		"password": sim.Password, "datacenter": vcsim.Datacenter})
	var vmID, disk string
	for _, vm := range vms {
		if vm.Name == "PGWINTESTBIOS" {
			vmID, disk = vm.ID, fmt.Sprintf("disk %d", vm.Disks[0].Key)
		}
	}
	var job struct {
		JobID string `json:"job_id"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": vmID},
		"replication_type": "initial"}, &job); code != http.StatusCreated {
		t.Fatalf("create a job of %q = %d (inventory %+v)", vmID, code, vms)
	}

	// A plan of the other VM.
	var other string
	for _, vm := range vms {
		if vm.Name != "PGWINTESTBIOS" {
			other = vm.Path
		}
	}
	if code := o.Do(http.MethodPost, "/api/v1/vcenters", map[string]any{"name": "sim", "host": sim.Host, "username": sim.Username,
		"password": sim.Password}, nil); code != http.StatusCreated {
		t.Fatalf("register the vCenter = %d", code)
	}
	if code := o.Do(http.MethodPost, "/api/v1/plans", map[string]any{"name": "wave-1", "vcenter": "sim", "vms": []string{other},
		"sync": map[string]any{"interval": "1h"}}, nil); code != http.StatusCreated {
		t.Fatalf("create a plan = %d", code)
	}

	// Only the OMA's data dir and URL: the token is its initial-token.
	at := []string{"-data", o.Dir, "-api-url", o.URL}
	oma := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := dispatch(context.Background(), args, &out, &errOut)
		return out.String(), err
	}
	with := func(args ...string) []string { return append(args, at...) }

	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"the inventory", with("vms"), []string{"ID", "NAME", vmID, "PGWINTESTBIOS", "vma-1", sim.Host, "poweredOn"}},
		{"the jobs", with("jobs"), []string{"JOB", "STATE", job.JobID, "PGWINTESTBIOS", "initial", "pending"}},
		{"the jobs with list", with("jobs", "list", "-state", "pending"), []string{job.JobID}},
		{"no job in a state", with("jobs", "list", "-state", "copying"), []string{"no jobs"}},
		{"one job", append([]string{"jobs", "show", job.JobID}, at...), []string{"job ", job.JobID, "state", "pending", "PGWINTESTBIOS", disk}},
		{"the plans", with("plans"), []string{"PLAN", "NEXT DUE", "wave-1", "sim", "every 1h0m0s"}},
		{"one plan", append([]string{"plans", "show", "wave-1"}, at...), []string{"plan", "wave-1", "schedule", "0 error(s)", path.Base(other)}},
		{"a plan's preflight", append([]string{"plans", "preflight", "wave-1"}, at...), []string{"plan wave-1:", "0 error(s)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := oma(t, tt.args...)
			if err != nil {
				t.Fatalf("oma %v: %v", tt.args, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("oma %v printed no %q:\n%s", tt.args, w, out)
				}
			}
		})
	}
	out, err := oma(t, append([]string{"jobs", "show", job.JobID, "-json"}, at...)...)
	if testing.Verbose() {
		for _, args := range [][]string{with("vms"), with("jobs"), append([]string{"jobs", "show", job.JobID}, at...), with("plans"), append([]string{"plans", "show", "wave-1"}, at...)} {
			text, _ := oma(t, args...)
			t.Logf("oma %s:\n%s", args[0], text)
		}
	}
	var shown struct {
		JobID string `json:"job_id"`
		State string `json:"state"`
	}
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.JobID != job.JobID || shown.State != events.JobPending {
		t.Errorf("oma jobs show -json = %v, %q", err, out)
	}

	// The token from the environment wins; a wrong one is refused, saying
	// where the token comes from.
	wrongData := t.TempDir()
	t.Run("token from the environment", func(t *testing.T) {
		t.Setenv(tokenEnv, o.Token)
		if out, err := oma(t, "jobs", "-data", wrongData, "-api-url", o.URL); err != nil || !strings.Contains(out, job.JobID) {
			t.Errorf("oma jobs with $%s = %v, %q", tokenEnv, err, out)
		}
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tokenFile, []byte(o.Token+"\n"), 0o600)
	if out, err := oma(t, "vms", "-data", wrongData, "-api-url", o.URL, "-token-file", tokenFile); err != nil || !strings.Contains(out, vmID) {
		t.Errorf("oma vms -token-file = %v, %q", err, out)
	}

	for _, tt := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"a wrong token", "not-a-token", with("jobs"), "refused the API token (401"},
		{"no token anywhere", "", []string{"jobs", "-data", wrongData, "-api-url", o.URL}, "no API token: set $GODWIT_TOKEN"},
		{"a missing token file", "", []string{"jobs", "-api-url", o.URL, "-token-file", filepath.Join(wrongData, "none")}, "-token-file"},
		{"a URL that is not one", "", []string{"jobs", "-data", o.Dir, "-api-url", "127.0.0.1:8082"}, `-api-url "127.0.0.1:8082": want http(s)://host:port`},
		{"no OMA there", "", []string{"vms", "-data", o.Dir, "-api-url", "http://" + freeAddr(t)}, "cannot reach the OMA's API at"},
		{"an unknown job", "", with("jobs", "show", "repl-none"), "404"},
		{"show without an id", "", with("jobs", "show"), "oma jobs show needs the job's id"},
		{"an unknown state", "", with("jobs", "-state", "dreaming"), "400"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tokenEnv, tt.env)
			out, err := oma(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("oma %v = %v (printed %q), want an error saying %q", tt.args, err, out, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), o.Token) {
				t.Errorf("oma %v: the error shows the token: %v", tt.args, err)
			}
		})
	}

	// A read token may list and show, not cancel: 403 naming the scope.
	var readTok struct {
		Token string `json:"token"`
	}
	if code := o.Do(http.MethodPost, "/api/v1/tokens", map[string]string{"name": "viewer", "scope": "read"}, &readTok); code != http.StatusCreated || readTok.Token == "" {
		t.Fatalf("create a read token = %d", code)
	}
	t.Run("a read token", func(t *testing.T) {
		t.Setenv(tokenEnv, readTok.Token)
		if out, err := oma(t, with("jobs", "show", job.JobID)...); err != nil || !strings.Contains(out, job.JobID) {
			t.Errorf("oma jobs show with a read token = %v, %q", err, out)
		}
		_, err := oma(t, with("jobs", "cancel", job.JobID)...)
		if err == nil || !strings.Contains(err.Error(), "(403)") || !strings.Contains(err.Error(), "operate") {
			t.Errorf("oma jobs cancel with a read token = %v, want a 403 naming the operate scope", err)
		}
	})

	// A rate limit with K, M or G; a pending job can be neither paused nor
	// resumed.
	if out, err := oma(t, append([]string{"jobs", "rate", job.JobID, "-rate", "50M"}, at...)...); err != nil || out != "job "+job.JobID+": pending, rate limit 50.0 MiB/s\n" {
		t.Errorf("oma jobs rate -rate 50M = %v, %q", err, out)
	}
	var limited struct {
		RateLimit int64 `json:"rate_limit"`
	}
	if o.Do(http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &limited); limited.RateLimit != 50<<20 {
		t.Errorf("after oma jobs rate the job's limit is %d", limited.RateLimit)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "rate", job.JobID, "-rate", "50MB"}, "-rate: not a byte count"},
		{[]string{"jobs", "rate", job.JobID}, "needs -rate"},
		{[]string{"jobs", "rate", job.JobID, "-rate", "1K"}, "400"},
		{[]string{"jobs", "pause", job.JobID}, "409"},
		{[]string{"jobs", "resume", job.JobID}, "409"},
	} {
		if out, err := oma(t, append(tt.args, at...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("oma %v = %v, %q; want an error saying %q", tt.args, err, out, tt.want)
		}
	}

	// Cancel: the job ends cancelled; again changes nothing; an unknown job is a 404.
	if out, err := oma(t, append([]string{"jobs", "cancel", job.JobID}, at...)...); err != nil || out != "job "+job.JobID+": cancelled\n" {
		t.Errorf("oma jobs cancel = %v, %q", err, out)
	}
	var after struct {
		State string `json:"state"`
	}
	if o.Do(http.MethodGet, "/api/v1/replications/"+job.JobID, nil, &after); after.State != events.JobCancelled {
		t.Errorf("after oma jobs cancel the job is %s", after.State)
	}
	if out, err := oma(t, append([]string{"jobs", "cancel", job.JobID}, at...)...); err != nil || out != "job "+job.JobID+": cancelled\n" {
		t.Errorf("cancelling a cancelled job = %v, %q; want it cancelled still", err, out)
	}
	if out, err := oma(t, append([]string{"jobs", "cancel", "repl-none"}, at...)...); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("cancelling an unknown job = %v, %q; want a 404", err, out)
	}
}
