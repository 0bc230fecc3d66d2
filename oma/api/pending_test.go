package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
)

// TestPendingJobsExpire: a job created and never started expires after
// the pending TTL: it is cancelled saying so, with its event, and its NBD
// port goes back to the pool; a started one would not be touched (it is
// no longer pending).
func TestPendingJobsExpire(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock()
	o := newOMA(t, 1, func(c *appliance.Config) { c.Now, c.PendingJobTTL = clock.Now, time.Hour })
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20), testVM("vm-2", 1<<20))
	var j job
	if code := o.do("POST", "/api/v1/replications", createBody("vm-1", "initial"), &j); code != 201 {
		t.Fatalf("create = %d", code)
	}
	if code := o.do("POST", "/api/v1/replications", createBody("vm-2", "initial"), nil); code != http.StatusServiceUnavailable {
		t.Fatalf("create on a full pool = %d, want 503", code)
	}
	clock.Add(59 * time.Minute)
	if got := o.get(j.JobID); got.State != "pending" {
		t.Errorf("after 59 min the job is %s, want pending", got.State)
	}
	clock.Add(2 * time.Minute)
	var got job
	testkit.Eventually(t, "the pending job expired", func() bool {
		o.do("GET", "/api/v1/replications/"+j.JobID, nil, &got)
		return got.State == "cancelled"
	})
	if !strings.Contains(got.LastError, "expired") {
		t.Errorf("expired job's last_error = %q, want it to say expired", got.LastError)
	}
	testkit.Eventually(t, "the expiry's event", func() bool {
		return slices.Contains(jobEvents(t, o, j.JobID), "pending>cancelled")
	})
	// The port goes back to the pool just after the job's state is stored:
	// a create a moment too early is 503, and changes nothing.
	testkit.Eventually(t, "a create after the expiry taking the released port", func() bool {
		code := o.do("POST", "/api/v1/replications", createBody("vm-2", "initial"), nil)
		if code != 201 && code != http.StatusServiceUnavailable {
			t.Fatalf("create after the expiry = %d, want 201 (the port was released)", code)
		}
		return code == 201
	})
}

// TestPendingJobsPerToken: one token may have at most MaxPendingJobs
// pending jobs; one more is 429 naming the limit, and changes nothing;
// another token is not held back, and a cancelled job frees a place.
func TestPendingJobsPerToken(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 4, func(c *appliance.Config) { c.MaxPendingJobs = 2 })
	v := o.addVMA("vma-1")
	o.learn(v, testVM("vm-1", 1<<20), testVM("vm-2", 1<<20), testVM("vm-3", 1<<20), testVM("vm-4", 1<<20))
	var tok struct{ Token string }
	if code := o.do("POST", "/api/v1/tokens", map[string]string{"name": "script"}, &tok); code != 201 {
		t.Fatalf("create token = %d", code)
	}
	create := func(secret, vm string, out any) int {
		body, _ := json.Marshal(createBody(vm, "initial"))
		return o.doRaw("POST", "/api/v1/replications", "Bearer "+secret, body, out)
	}
	var first job
	if code := create(tok.Token, "vm-1", &first); code != 201 {
		t.Fatalf("first = %d", code)
	}
	if code := create(tok.Token, "vm-2", nil); code != 201 {
		t.Fatalf("second = %d", code)
	}
	var p problem
	if code := create(tok.Token, "vm-3", &p); code != http.StatusTooManyRequests || !strings.Contains(p.Detail, "-max-pending-jobs 2") {
		t.Errorf("third = %d %+v, want 429 naming the limit", code, p)
	}
	var list struct{ Replications []job }
	if o.do("GET", "/api/v1/replications", nil, &list); len(list.Replications) != 2 {
		t.Errorf("%d jobs after a refused create, want 2", len(list.Replications))
	}
	if code := create(o.token, "vm-3", nil); code != 201 {
		t.Errorf("another token's create = %d, want 201", code)
	}
	if code := o.do("DELETE", "/api/v1/replications/"+first.JobID, nil, nil); code != 200 {
		t.Fatalf("cancel = %d", code)
	}
	if code := create(tok.Token, "vm-4", nil); code != 201 {
		t.Errorf("create after a cancel = %d, want 201", code)
	}
}
