package api_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"

	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
)

// permitted returns the ports a line's permitopen options open.
func permitted(t *testing.T, line string) []int {
	t.Helper()
	var out []int
	for _, m := range regexp.MustCompile(`permitopen="127\.0\.0\.1:(\d+)"`).FindAllStringSubmatch(line, -1) {
		p, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// sharedVMA is a VMA registered with an SSH key of its own.
type sharedVMA struct {
	*vma
	signer ssh.Signer
	cred   vmas.Credentials
}

// addVMAWithKey registers VMA id with a new SSH key and connects it.
func (o *omaUnderTest) addVMAWithKey(id string) *sharedVMA {
	o.t.Helper()
	signer, err := tunnel.LoadOrCreateKey(o.t.TempDir())
	if err != nil {
		o.t.Fatal(err)
	}
	var cred vmas.Credentials
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": id, "ssh_public_key": tunnel.AuthorizedKey(signer)}, &cred); code != http.StatusCreated {
		o.t.Fatalf("POST /api/v1/vmas %s = %d", id, code)
	}
	return &sharedVMA{vma: o.connectVMA(id, cred.NKeySeed), signer: signer, cred: cred}
}

// TestNBDShares: two VMAs get disjoint shares of the NBD port pool, each
// line opens NATS and its own share only, a VMA's jobs take ports of its
// share only and a full share is 503 naming the limit; through the real
// sshd with the production settings, vma-1's key is refused a connection
// to vma-2's export and reaches its own.
func TestNBDShares(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2) // shares of 2 ports, a pool of 16
	u, err := url.Parse(o.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	natsPort, _ := strconv.Atoi(u.Port())
	v1, v2 := o.addVMAWithKey("vma-1"), o.addVMAWithKey("vma-2")

	share := map[string]store.Ports{"vma-1": v1.cred.NBDPorts, "vma-2": v2.cred.NBDPorts}
	t.Run("disjoint shares", func(t *testing.T) {
		for id, s := range share {
			if s.Last-s.First+1 != 2 || s.First < o.FirstPort || s.Last > o.LastPort {
				t.Errorf("%s's share = %s, want 2 ports of the pool %d-%d", id, s, o.FirstPort, o.LastPort)
			}
		}
		if a, b := share["vma-1"], share["vma-2"]; a.First <= b.Last && b.First <= a.Last {
			t.Errorf("shares overlap: vma-1 %s, vma-2 %s", a, b)
		}
	})
	t.Run("lines open their own share", func(t *testing.T) {
		var list struct {
			VMAs []struct {
				ID            string      `json:"id"`
				NBDPorts      store.Ports `json:"nbd_ports"`
				AuthorizedKey string      `json:"authorized_key"`
			} `json:"vmas"`
		}
		if code := o.do(http.MethodGet, "/api/v1/vmas", nil, &list); code != http.StatusOK || len(list.VMAs) != 2 {
			t.Fatalf("GET /api/v1/vmas = %d, %+v", code, list)
		}
		for _, v := range list.VMAs {
			s := share[v.ID]
			want := []int{natsPort}
			for p := s.First; p <= s.Last; p++ {
				want = append(want, p)
			}
			cred := map[string]vmas.Credentials{"vma-1": v1.cred, "vma-2": v2.cred}[v.ID]
			for _, line := range []string{v.AuthorizedKey, cred.AuthorizedKey} {
				if got := permitted(t, line); !slices.Equal(got, want) {
					t.Errorf("%s's line opens %v, want NATS and its share %v:\n%s", v.ID, got, want, line)
				}
			}
			if v.NBDPorts != s {
				t.Errorf("GET /api/v1/vmas: %s's nbd_ports = %s, want %s", v.ID, v.NBDPorts, s)
			}
		}
	})

	o.learn(v1.vma, testVM("vm-a", 1<<20))
	o.learn(v2.vma, testVM("vm-b", 1<<20), testVM("vm-c", 1<<20), testVM("vm-d", 1<<20))
	create := func(vmID string) job {
		t.Helper()
		var j job
		if code := o.do(http.MethodPost, "/api/v1/replications", createBody(vmID, "initial"), &j); code != http.StatusCreated {
			t.Fatalf("create %s = %d", vmID, code)
		}
		return j
	}
	inShare := func(j job, s store.Ports) bool {
		p := j.Disks[0].Export.Port
		return p >= s.First && p <= s.Last
	}
	var jobA, jobB job
	t.Run("jobs take their VMA's ports", func(t *testing.T) {
		// vma-2's jobs fill its share while vma-1's is free.
		jobB = create("vm-b")
		for _, j := range []job{jobB, create("vm-c")} {
			if !inShare(j, share["vma-2"]) {
				t.Errorf("vma-2's job %s got port %d, outside its share %s", j.JobID, j.Disks[0].Export.Port, share["vma-2"])
			}
		}
		var p problem
		if code := o.do(http.MethodPost, "/api/v1/replications", createBody("vm-d", "initial"), &p); code != http.StatusServiceUnavailable ||
			p.Field != "vma_id" || !strings.Contains(p.Detail, "VMA vma-2's share "+share["vma-2"].String()) || !strings.Contains(p.Detail, "-nbd-ports-per-vma 2") {
			t.Errorf("a third job of vma-2 = %d %+v, want 503 naming its share and -nbd-ports-per-vma", code, p)
		}
		if jobA = create("vm-a"); !inShare(jobA, share["vma-1"]) {
			t.Errorf("vma-1's job got port %d, outside its share %s", jobA.Disks[0].Export.Port, share["vma-1"])
		}
	})

	t.Run("sshd refuses another VMA's port", func(t *testing.T) {
		sshd := tunneltest.StartSSHD(t)
		sshd.Authorize(v1.cred.AuthorizedKey, v2.cred.AuthorizedKey)
		c, err := ssh.Dial("tcp", sshd.Addr, &ssh.ClientConfig{User: sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(v1.signer)},
			HostKeyCallback: ssh.FixedHostKey(sshd.HostKey), Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("vma-1's key to sshd: %v", err)
		}
		defer c.Close()
		// Its own share, where its job's nbdkit serves: the NBD greeting comes.
		if jobA.JobID == "" {
			t.Fatal("vma-1 has no job")
		}
		own := jobA.Disks[0].Export.Port
		conn, err := c.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", own))
		if err != nil {
			t.Fatalf("vma-1's key to its own export port %d: %v", own, err)
		}
		magic, read := make([]byte, 8), make(chan error, 1)
		go func() { _, err := io.ReadFull(conn, magic); read <- err }()
		select {
		case err := <-read:
			if err != nil || string(magic) != "NBDMAGIC" {
				t.Errorf("vma-1's key to its own export port %d read %q, %v; want the NBD greeting", own, magic, err)
			}
		case <-time.After(time.Minute): // a hang guard only: nbdkit greets at once
			t.Errorf("vma-1's key to its own export port %d: no NBD greeting in a minute", own)
		}
		conn.Close()
		// vma-2's job's port, and every port of vma-2's share: prohibited.
		for p := share["vma-2"].First; p <= share["vma-2"].Last; p++ {
			conn, err := c.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
				if conn != nil {
					conn.Close()
				}
				t.Errorf("vma-1's key to port %d of vma-2's share (job %s on %d) = %v, want administratively prohibited", p, jobB.JobID, jobB.Disks[0].Export.Port, err)
			}
		}
	})
}

// TestNBDSharesPoolFull: a registration when the pool has no free share
// left is 503 naming the pool and the limit, and registers nothing.
func TestNBDSharesPoolFull(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2, func(c *appliance.Config) { c.NBDPortsPerVMA = 8 }) // a pool of 16: two shares
	o.addVMA("vma-1")
	o.addVMA("vma-2")
	var p problem
	code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-3", "ssh_public_key": sshKey}, &p)
	pool := fmt.Sprintf("%d-%d", o.FirstPort, o.LastPort)
	if code != http.StatusServiceUnavailable || p.Field != "id" || !strings.Contains(p.Detail, "the NBD port pool "+pool+" has no 8 free ports") ||
		!strings.Contains(p.Detail, "-nbd-ports-per-vma 8") {
		t.Errorf("POST /api/v1/vmas on a full pool = %d %+v, want 503 naming the pool and -nbd-ports-per-vma", code, p)
	}
	if ids := registered(o); len(ids) != 2 || !ids["vma-1"] || !ids["vma-2"] {
		t.Errorf("registered %v after the refusal, want vma-1 and vma-2", ids)
	}
}

// TestNBDSharesBefore: a VMA registered before shares keeps the whole pool,
// for its jobs and its line, and the OMA warns of it at start; a VMA
// registered after gets a share.
func TestNBDSharesBefore(t *testing.T) {
	t.Parallel()
	o := newOMA(t, 2) // shares of 2 ports
	o.learn(o.addVMA("vma-1"), testVM("vm-1", 1<<20), testVM("vm-2", 1<<20), testVM("vm-3", 1<<20))
	o.editStore(func(tx *bbolt.Tx) error {
		v, err := store.GetVMA(tx, "vma-1")
		if err != nil {
			return err
		}
		v.NBDPorts, v.SSHPublicKey = nil, sshKey // as an OMA before shares left it
		return store.PutVMA(tx, v)
	})
	if !strings.Contains(o.Logs.String(), "VMA registered before NBD port shares") {
		t.Errorf("no warning of vma-1 at start:\n%s", o.Logs.String())
	}
	var list struct {
		VMAs []struct {
			ID            string       `json:"id"`
			NBDPorts      *store.Ports `json:"nbd_ports"`
			AuthorizedKey string       `json:"authorized_key"`
		} `json:"vmas"`
	}
	if code := o.do(http.MethodGet, "/api/v1/vmas", nil, &list); code != http.StatusOK || len(list.VMAs) != 1 {
		t.Fatalf("GET /api/v1/vmas = %d, %+v", code, list)
	}
	if got := permitted(t, list.VMAs[0].AuthorizedKey); len(got) != 1+16 || got[1] != o.FirstPort || got[16] != o.LastPort || list.VMAs[0].NBDPorts != nil {
		t.Errorf("vma-1 from before shares: nbd_ports %v, line opens %v; want none and the whole pool %d-%d", list.VMAs[0].NBDPorts, got, o.FirstPort, o.LastPort)
	}
	// Three jobs at once: more than a share holds.
	for _, vm := range []string{"vm-1", "vm-2", "vm-3"} {
		var j job
		if code := o.do(http.MethodPost, "/api/v1/replications", createBody(vm, "initial"), &j); code != http.StatusCreated {
			t.Errorf("create %s of vma-1 from before shares = %d, want 201 (the whole pool)", vm, code)
		}
	}
	// A VMA registered now gets a share.
	var cred vmas.Credentials
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": "vma-2"}, &cred); code != http.StatusCreated ||
		cred.NBDPorts.Last-cred.NBDPorts.First != 1 {
		t.Errorf("POST /api/v1/vmas vma-2 = %d, share %s; want 201 and 2 ports", code, cred.NBDPorts)
	}
	// A share the pool no longer holds (-nbd-ports changed): no line, and
	// no job, with a 503 naming the command that gives a new share.
	o.learn(o.connectVMA("vma-2", cred.NKeySeed), testVM("vm-4", 1<<20))
	o.editStore(func(tx *bbolt.Tx) error {
		v, err := store.GetVMA(tx, "vma-2")
		if err != nil {
			return err
		}
		v.NBDPorts, v.SSHPublicKey = &store.Ports{First: o.LastPort + 100, Last: o.LastPort + 101}, sshKey
		return store.PutVMA(tx, v)
	})
	if code := o.do(http.MethodGet, "/api/v1/vmas", nil, &list); code != http.StatusOK || len(list.VMAs) != 2 || list.VMAs[1].AuthorizedKey != "" {
		t.Errorf("GET /api/v1/vmas with vma-2's share outside the pool = %d %+v, want 200 and no line for vma-2", code, list)
	}
	var p problem
	if code := o.do(http.MethodPost, "/api/v1/replications", createBody("vm-4", "initial"), &p); code != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "oma vma nbd-ports -id vma-2") {
		t.Errorf("create for vma-2 with its share outside the pool = %d %+v, want 503 naming oma vma nbd-ports", code, p)
	}
}
