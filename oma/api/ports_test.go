package api_test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/godwit/godwit/oma/appliance"
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
