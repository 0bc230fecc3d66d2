package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/vmas"
)

// sshKey is a fixed ed25519 public key, so lines are exact.
const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5bVb0Hq8GpV0uCkq2cJ3Ytq0wQFJ9XrX7i1dVb4dS"

// TestVMASSHKey registers VMAs with and without an SSH key: each gets the
// next API port, the answer and the list hold the exact authorized_keys
// line for the OMA's NATS port and the VMA's share of the NBD pool, and a bad key is 400 naming
// ssh_public_key and registers nothing.
func TestVMASSHKey(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2)
	u, err := url.Parse(o.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	// The API port is no longer in the line (the OMA holds it); the NBD
	// ports are the VMA's share of the pool: 2 ports each, in the order
	// of registration.
	share := map[string]int{"vma-1": 0, "vma-2": 1, "vma-3": 2, "vma-4": 3}
	line := func(id string, _ int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `restrict,command="/bin/false",port-forwarding,permitopen="127.0.0.1:%s"`, u.Port())
		first := o.FirstPort + 2*share[id]
		for p := first; p <= first+1; p++ {
			fmt.Fprintf(&b, `,permitopen="127.0.0.1:%d"`, p)
		}
		fmt.Fprintf(&b, ` %s godwit-vma-%s`, sshKey, id)
		return b.String()
	}

	bad := []struct {
		name string
		key  any
	}{
		{"garbage", "ssh-ed25519 nope!"},
		{"blank", "   "},
		{"options", "restrict " + sshKey},
		{"dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"},
		{"not a string", 42},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			var p problem
			if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-1", "ssh_public_key": tt.key}, &p); code != http.StatusBadRequest || p.Field != "ssh_public_key" {
				t.Errorf("POST /api/v1/vmas with key %v = %d %+v, want 400 naming ssh_public_key", tt.key, code, p)
			}
		})
	}
	if ids := registered(o); len(ids) != 0 {
		t.Fatalf("refused registrations registered %v", ids)
	}

	// The VMAs without a port of their own get the lowest free one from
	// 9081: free of VMAs, and of other processes (other tests' OMAs, or
	// another clone's, hold some, and may let one go meanwhile, so the
	// ports need not rise in the order of registration).
	good := []struct {
		id, key  string
		ownPort  int
		wantLine bool
	}{
		{"vma-1", sshKey + " root@vma-1", 0, true},
		{"vma-2", sshKey, 0, true},
		{"vma-3", "", 0, false},
		{"vma-4", sshKey, 19500, true},
	}
	ports := map[string]int{}
	taken := map[int]bool{}
	for _, tt := range good {
		body := map[string]any{"id": tt.id}
		if tt.ownPort != 0 {
			body["api_port"] = tt.ownPort
		}
		if tt.key != "" {
			body["ssh_public_key"] = tt.key
		}
		var cred vmas.Credentials
		if code := o.do(http.MethodPost, "/api/v1/vmas", body, &cred); code != http.StatusCreated {
			t.Fatalf("POST /api/v1/vmas %s = %d", tt.id, code)
		}
		want := ""
		if tt.wantLine {
			want = line(tt.id, cred.APIPort)
		}
		portOK := cred.APIPort == tt.ownPort
		if tt.ownPort == 0 {
			portOK = cred.APIPort >= authkeys.FirstAPIPort && !taken[cred.APIPort]
		}
		ports[tt.id], taken[cred.APIPort] = cred.APIPort, true
		if !portOK || cred.AuthorizedKey != want || cred.NKeySeed == "" {
			t.Errorf("POST /api/v1/vmas %s = port %d, line\n%s\nwant port %d (0: a free one from 9081, no other VMA's), line\n%s", tt.id, cred.APIPort, cred.AuthorizedKey, tt.ownPort, want)
		}
	}

	for _, tt := range []struct {
		port any
		code int
	}{{19500, http.StatusConflict}, {ports["vma-1"], http.StatusConflict}, {80, http.StatusBadRequest}, {70000, http.StatusBadRequest}, {"9090", http.StatusBadRequest}} {
		var p problem
		if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": "vma-5", "api_port": tt.port}, &p); code != tt.code || p.Field != "api_port" {
			t.Errorf("POST /api/v1/vmas with api_port %v = %d %+v, want %d naming api_port", tt.port, code, p, tt.code)
		}
	}

	var list struct {
		VMAs []struct {
			ID            string `json:"id"`
			SSHPublicKey  string `json:"ssh_public_key"`
			APIPort       int    `json:"api_port"`
			AuthorizedKey string `json:"authorized_key"`
		} `json:"vmas"`
	}
	if code := o.do(http.MethodGet, "/api/v1/vmas", nil, &list); code != http.StatusOK || len(list.VMAs) != len(good) {
		t.Fatalf("GET /api/v1/vmas = %d, %d VMAs", code, len(list.VMAs))
	}
	for i, tt := range good {
		v := list.VMAs[i]
		want := ""
		if tt.wantLine {
			want = line(tt.id, ports[tt.id])
		}
		wantKey := ""
		if tt.key != "" {
			wantKey = sshKey
		}
		if v.ID != tt.id || v.APIPort != ports[tt.id] || v.SSHPublicKey != wantKey || v.AuthorizedKey != want {
			t.Errorf("GET /api/v1/vmas [%d] = %+v, want %s port %d key %q line %q", i, v, tt.id, ports[tt.id], wantKey, want)
		}
	}
}
