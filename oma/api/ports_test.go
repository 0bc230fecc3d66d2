package api_test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
)

// TestVMAPortIsNoneOfTheOMAs: POST /api/v1/vmas refuses an api_port that
// is one of the OMA's own (API, NATS, sshd, the NBD pool), naming
// api_port, and registers nothing.
func TestVMAPortIsNoneOfTheOMAs(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2, func(c *appliance.Config) { c.SSHDPort = 19622 })
	port := func(hostport string) int {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(hostport, "http://"), "nats://"))
		n, _ := strconv.Atoi(p)
		return n
	}
	for name, p := range map[string]int{
		"API": port(o.url), "NATS": port(o.NATSURL), "sshd": 19622, "NBD pool, first": o.FirstPort, "NBD pool, last": o.LastPort,
	} {
		var pr problem
		code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-x", "api_port": p}, &pr)
		if code != http.StatusConflict || pr.Field != "api_port" || !strings.Contains(pr.Detail, "the OMA's own") {
			t.Errorf("api_port %d (the %s's) = %d %+v, want 409 naming api_port", p, name, code, pr)
		}
	}
	var list struct{ VMAs []struct{ ID string } }
	if o.do(http.MethodGet, "/api/v1/vmas", nil, &list); len(list.VMAs) != 0 {
		t.Errorf("refused registrations left VMAs: %+v", list.VMAs)
	}
}

// TestVMAPortHeldByAnotherProcess: a registration never gets an API port
// another process holds (it would get what operators send to the VMA), and
// while a registered VMA's port is held by another process (taken while
// the OMA was stopped) health is degraded and names it.
func TestVMAPortHeldByAnotherProcess(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	// Two free ports outside the OMA's NBD pool, which is free until
	// used, and which the OMA refuses as its own.
	ports, _ := testkit.FreePorts(t, 2)
	for ports+1 >= o.FirstPort && ports <= o.LastPort {
		ports, _ = testkit.FreePorts(t, 2)
	}
	squat, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports)))
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	var pr problem
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-x", "api_port": ports}, &pr); code != http.StatusConflict ||
		pr.Field != "api_port" || !strings.Contains(pr.Detail, "held by another process") {
		t.Errorf("api_port %d held by another process = %d %+v, want 409 naming api_port", ports, code, pr)
	}

	free := ports + 1
	var cred struct {
		APIPort int `json:"api_port"`
	}
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-1", "api_port": free}, &cred); code != http.StatusCreated || cred.APIPort != free {
		t.Fatalf("register vma-1 on port %d = %d %+v", free, code, cred)
	}
	o.Stop()
	squat2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(free)))
	if err != nil {
		t.Fatal(err)
	}
	defer squat2.Close()
	o.Start()
	o.sync()
	type health struct {
		Status  string            `json:"status"`
		NotHeld map[string]string `json:"vma_api_ports_not_held"`
	}
	testkit.Eventually(t, "health degraded, naming vma-1's port", func() bool {
		var h health
		o.do(http.MethodGet, "/api/v1/health", nil, &h)
		return h.Status == "degraded" && strings.Contains(h.NotHeld["vma-1"], strconv.Itoa(free))
	})
	squat2.Close()
	testkit.Eventually(t, "health ok once the OMA holds the port", func() bool {
		var h health
		o.do(http.MethodGet, "/api/v1/health", nil, &h)
		return h.Status == "ok" && len(h.NotHeld) == 0
	})
}
