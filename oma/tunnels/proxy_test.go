package tunnels_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tunnels"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/tunnel"
	"github.com/godwit/godwit/vma/tunnel/tunneltest"
	"golang.org/x/crypto/ssh"
)

// registry lists VMAs as the OMA's control layer does.
type registry struct {
	mu   sync.Mutex
	vmas []store.VMA
}

func (r *registry) VMAs() ([]store.VMA, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.VMA(nil), r.vmas...), nil
}

// vmaSide is a VMA's end: its SSH key and, while up, its tunnel serving an HTTP API that says
// which VMA answered and what it got.
type vmaSide struct {
	t    *testing.T // the test it lives for
	id   string
	key  ssh.Signer
	stop func()
}

// newVMA makes VMA id's key; it is stopped when t ends.
func newVMA(t *testing.T, id string) *vmaSide {
	t.Helper()
	key, err := tunnel.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := &vmaSide{t: t, id: id, key: key}
	t.Cleanup(v.down)
	return v
}

// up starts the VMA's tunnel to sshd, forwarding its API on the socket at path.
func (v *vmaSide) up(sshd *tunneltest.SSHD, path string) {
	t := v.t
	t.Helper()
	tun, err := tunnel.New(tunnel.Config{
		Addr: sshd.Addr, User: sshd.User, Key: v.key, KnownHosts: sshd.KnownHosts,
		Keepalive: 300 * time.Millisecond, ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond,
		RemoteListen: path, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("vma", v.id),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { tun.Run(ctx) })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"vma": v.id, "method": r.Method, "path": r.URL.Path, "body": string(body),
			"host": r.Host, "authorization": r.Header.Get("Authorization")})
	})}
	wg.Go(func() { srv.Serve(tun.Listener()) })
	v.stop = func() {
		srv.Close()
		tun.Listener().Close()
		cancel()
		wg.Wait()
	}
}

// down stops the VMA's tunnel and API.
func (v *vmaSide) down() {
	if v.stop != nil {
		v.stop()
		v.stop = nil
	}
}

// answer is what the test's client got.
type answer struct {
	status int
	ctype  string
	body   map[string]any
}

// call sends what the seed's curl commands send to the VMA's port, without a token.
func call(t *testing.T, addr, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/discover", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "curl/7.88.1")
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", addr, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("POST %s: %d, body: %v", addr, resp.StatusCode, err)
	}
	return a
}

// wantDown checks addr answers 503 naming VMA id.
func wantDown(t *testing.T, addr, id string) {
	t.Helper()
	a := call(t, addr, `{"password":"secret"}`)
	if a.status != http.StatusServiceUnavailable || a.ctype != "application/problem+json" ||
		!strings.HasPrefix(fmt.Sprint(a.body["detail"]), "VMA "+id+" not connected") {
		t.Fatalf("POST while %s is down = %d %s %v, want 503 problem+json naming it", id, a.status, a.ctype, a.body)
	}
}

// wantVMA waits until addr's requests reach VMA id, and checks what it got.
func wantVMA(t *testing.T, addr, id string) {
	t.Helper()
	var a answer
	testkit.Eventually(t, id+" answering through the OMA's port", func() bool {
		a = call(t, addr, `{"vcenter":"vc","password":"secret"}`)
		return a.status == http.StatusOK
	})
	want := map[string]any{"vma": id, "method": "POST", "path": "/api/v1/discover", "body": `{"vcenter":"vc","password":"secret"}`,
		"host": addr, "authorization": ""}
	if fmt.Sprint(a.body) != fmt.Sprint(want) {
		t.Errorf("the VMA got %v, want %v", a.body, want)
	}
}

// TestProxy: the OMA holds a VMA's API port whether its tunnel is up or not, so that no local
// user can take it; requests reach the VMA through its socket; while it is down they get 503
// naming it; a stale socket left by a killed session is removed so the VMA comes back; another
// VMA's key on its socket gets nothing.
func TestProxy(t *testing.T) {
	sshd := tunneltest.StartSSHD(t)
	dir := filepath.Join(t.TempDir(), "tunnels")
	vma1, vma2 := newVMA(t, "vma-1"), newVMA(t, "vma-2")
	var lines []string
	for _, v := range []*vmaSide{vma1, vma2} {
		line, err := authkeys.Line(authkeys.Forwards{}, tunnel.AuthorizedKey(v.key), v.id)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	sshd.Authorize(lines...)
	first, _ := testkit.FreePorts(t, 2)
	reg := &registry{vmas: []store.VMA{
		{ID: "vma-1", APIPort: first, SSHPublicKey: tunnel.AuthorizedKey(vma1.key)},
		{ID: "vma-2", APIPort: first + 1, SSHPublicKey: tunnel.AuthorizedKey(vma2.key)},
	}}
	logs := &testkit.Buffer{}
	p, err := tunnels.New(tunnels.Config{Dir: dir, Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	addr1 := fmt.Sprintf("127.0.0.1:%d", first)
	testkit.Eventually(t, "the OMA holding vma-1's port", func() bool { return p.Addrs()["vma-1"] == addr1 })
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir: %v, %v; want mode 0700", fi, err)
	}

	t.Run("down", func(t *testing.T) { wantDown(t, addr1, "vma-1") })
	t.Run("no squatter", func(t *testing.T) {
		l, err := net.Listen("tcp", addr1)
		if err == nil {
			l.Close()
			t.Fatalf("a local process bound %s, the port of vma-1", addr1)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("listen %s = %v, want address in use", addr1, err)
		}
	})
	path1 := tunnels.SocketPath(dir, "vma-1")
	t.Run("up", func(t *testing.T) {
		vma1.up(sshd, path1)
		wantVMA(t, addr1, "vma-1")
		fi, err := os.Lstat(path1)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket: %v, %v; want mode 0600 (sshd's StreamLocalBindMask)", fi, err)
		}
	})
	t.Run("session killed", func(t *testing.T) {
		if sshd.KillSessions() == 0 {
			t.Fatal("no sshd session to kill")
		}
		// The socket stays behind; the OMA removes it and the VMA's next forward is made.
		wantVMA(t, addr1, "vma-1")
		if !strings.Contains(logs.String(), "removed the socket a VMA's ended SSH session left") {
			t.Errorf("no log of the stale socket's removal:\n%s", logs.String())
		}
	})
	t.Run("stopped", func(t *testing.T) {
		vma1.down()
		testkit.Eventually(t, "503 once vma-1 is gone", func() bool {
			a := call(t, addr1, `{}`)
			return a.status == http.StatusServiceUnavailable
		})
		wantDown(t, addr1, "vma-1")
	})
	t.Run("another VMA's key on the socket", func(t *testing.T) {
		// vma-2's key binds vma-1's socket while vma-1 is down: OpenSSH lets it (one user for
		// all VMAs, no permitlisten for paths). Nothing sent to vma-1's port may reach it.
		vma2.up(sshd, path1)
		testkit.Eventually(t, "the OMA finding vma-2's key on vma-1's socket", func() bool {
			return strings.Contains(logs.String(), "held by another key")
		})
		for range 3 {
			if a := call(t, addr1, `{"password":"secret"}`); a.status != http.StatusServiceUnavailable || a.body["vma"] != nil {
				t.Fatalf("POST to vma-1's port with vma-2 on its socket = %d %v, want 503", a.status, a.body)
			}
		}
		vma2.down()
		// vma-1 comes back to its own socket.
		vma1.up(sshd, path1)
		wantVMA(t, addr1, "vma-1")
	})
	t.Run("deregistered", func(t *testing.T) {
		reg.mu.Lock()
		reg.vmas = reg.vmas[1:]
		reg.mu.Unlock()
		testkit.Eventually(t, "vma-1's port let go", func() bool { _, held := p.Addrs()["vma-1"]; return !held })
	})
}

// TestProxyPortTaken: a port another process holds when the OMA starts is logged, named, and
// taken as soon as it is free.
func TestProxyPortTaken(t *testing.T) {
	first, _ := testkit.FreePorts(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", first)
	squat, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	logs := &testkit.Buffer{}
	p, err := tunnels.New(tunnels.Config{Dir: filepath.Join(t.TempDir(), "tunnels"), Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, &registry{vmas: []store.VMA{{ID: "vma-1", APIPort: first}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.Eventually(t, "the taken port logged", func() bool {
		return strings.Contains(logs.String(), "cannot hold a VMA's API port") && strings.Contains(logs.String(), addr)
	})
	if why := p.Unheld()["vma-1"]; !strings.Contains(why, "address already in use") {
		t.Errorf("Unheld()[vma-1] = %q, want the bind error", why)
	}
	squat.Close()
	testkit.Eventually(t, "the port held once free", func() bool { return p.Addrs()["vma-1"] == addr })
	if u := p.Unheld(); len(u) != 0 {
		t.Errorf("Unheld() = %v once the port is held", u)
	}
	// A VMA registered without an SSH key has no tunnel: 503 naming it.
	a := call(t, addr, `{}`)
	if a.status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(a.body["detail"]), "VMA vma-1 not connected: no SSH key") {
		t.Errorf("POST = %d %v, want 503 naming vma-1 and its missing key", a.status, a.body)
	}
}
