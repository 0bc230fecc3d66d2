package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/openapi/openapitest"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/api"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// TestOpenAPI checks the VMA's API against its OpenAPI document: the
// document's operations are the router's, and a walk through every
// operation on a real VMA with a token (behind it the OMA, the simulator
// and nbdkit: a discovery, a job replicated to its end, its status,
// progress and cleanup; errors too) sends only requests the document
// allows and gets only answers it describes.
func TestOpenAPI(t *testing.T) {
	const token = "vma-openapi-token"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := api.ReadTokenFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(c *appliance.Config) { c.API.TokenSHA256 = sum })

	var raw json.RawMessage
	if code := testbed.Do(t, http.MethodGet, s.url+"/api/v1/openapi.json", "", nil, &raw); code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json = %d", code)
	}
	chk := openapitest.New(t, raw)
	chk.MatchesRouter(t, api.New(nil, nil, nil, api.Config{Metrics: http.NotFoundHandler()}).Router())
	c := chk.NewClient(s.url, token)

	c.Send(http.MethodGet, "/api/v1/health", "", nil, nil, false)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/health", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/openapi.json", nil, nil)
	c.Must(http.StatusOK, http.MethodGet, "/metrics", nil, nil)
	if code := c.Send(http.MethodPost, "/api/v1/discover", "", s.discoverBody(s.sim.Password), nil, false); code != http.StatusUnauthorized {
		t.Errorf("discover without the token = %d, want 401", code)
	}
	if code := c.Send(http.MethodPost, "/api/v1/discover", token, `{"vcenter": 7}`, nil, true); code != http.StatusBadRequest {
		t.Errorf("discover with a number for vcenter = %d, want 400", code)
	}
	if code := c.Do(http.MethodPost, "/api/v1/discover", s.discoverBody("wrong-password"), nil); code != http.StatusUnauthorized {
		t.Errorf("discover with a wrong password = %d, want 401", code)
	}
	var found struct {
		VMs []events.VM `json:"vms"`
	}
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/discover", s.discoverBody(s.sim.Password), &found)
	if code := c.Do(http.MethodGet, "/api/v1/status/no-such-job", nil, nil); code != http.StatusNotFound {
		t.Errorf("status of an unknown job = %d, want 404", code)
	}

	var seed events.VM
	for _, vm := range found.VMs {
		if vm.Name == vcsim.SeedVM {
			seed = vm
		}
	}
	var job struct {
		JobID string `json:"job_id"`
	}
	testkit.Eventually(t, "a job on the OMA", func() bool {
		return s.o.Do(http.MethodPost, "/api/v1/replications", map[string]any{"source_vm": map[string]string{"id": seed.ID},
			"replication_type": "initial"}, &job) == http.StatusCreated
	})
	jobID := job.JobID
	c.Must(http.StatusAccepted, http.MethodPost, "/api/v1/replicate", map[string]any{"job_id": jobID, "vcenter": s.sim.Host, "username": s.sim.Username,
		"password": s.sim.Password, "vm_paths": []string{"/" + vcsim.Datacenter + "/vm/" + vcsim.SeedVM}, "oma_url": "http://localhost:8082"}, nil)
	var st struct {
		State string `json:"state"`
	}
	testkit.Eventually(t, "the job completed", func() bool {
		c.Must(http.StatusOK, http.MethodGet, "/api/v1/status/"+jobID, nil, &st)
		return st.State == "completed" || st.State == "failed" || st.State == "cancelled"
	})
	if st.State != "completed" {
		t.Fatalf("the job ended %s", st.State)
	}
	c.Must(http.StatusOK, http.MethodGet, "/api/v1/progress/"+jobID, nil, nil)
	c.Must(http.StatusOK, http.MethodPost, "/api/v1/cleanup/"+jobID, nil, nil)
	chk.Covered(t)
}
