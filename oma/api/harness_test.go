package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/api"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/exports/exportstest"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/seal"
)

// omaUnderTest is a whole OMA on real parts: embedded NATS, bbolt, nbdkit,
// and the API over real HTTP. It can be stopped and started again on the
// same data, like a restart.
type omaUnderTest struct {
	t         testing.TB
	dir       string
	natsPort  int
	firstPort int
	lastPort  int
	admin     bustest.User

	srv    *bus.Server
	conn   *bus.Conn
	st     *store.Store
	exp    *exports.Manager
	ctl    *control.Control
	http   *httptest.Server
	cancel context.CancelFunc
	done   chan error
	url    string
	token  string
}

// newOMA starts an OMA with a pool of ports NBD ports.
func newOMA(t testing.TB, ports int) *omaUnderTest {
	t.Helper()
	first, last := exportstest.FreePorts(t, ports)
	o := &omaUnderTest{t: t, dir: t.TempDir(), firstPort: first, lastPort: last, admin: bustest.NewUser(t)}
	o.start()
	t.Cleanup(o.stop)
	st := o.st
	tok, err := tokens.Create(st, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o.token = tok
	return o
}

func (o *omaUnderTest) start() {
	t := o.t
	t.Helper()
	ctx := context.Background()
	var err error
	o.st, err = store.Open(filepath.Join(o.dir, "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := o.natsPort
	if port == 0 {
		port = -1
	}
	o.srv, err = bus.StartServer(ctx, bus.ServerConfig{StoreDir: filepath.Join(o.dir, "jetstream"), Port: port,
		Access: bus.Access{Admins: []string{o.admin.PublicKey}}})
	if err != nil {
		t.Fatal(err)
	}
	if o.natsPort == 0 {
		_, p, _ := net.SplitHostPort(o.srv.ClientURL()[len("nats://"):])
		o.natsPort, _ = strconv.Atoi(p)
	}
	o.conn, err = o.srv.Connect(ctx, bus.ClientConfig{Name: "oma", Source: "/godwit/oma"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.conn.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	o.exp = exports.New(exports.Config{FirstPort: o.firstPort, LastPort: o.lastPort})
	o.ctl = control.New(control.Config{DataDir: o.dir, NATSURL: o.srv.ClientURL(), DiscoverTimeout: 20 * time.Second}, o.st, o.conn, o.exp, o.srv)
	if err := o.ctl.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	o.cancel, o.done = cancel, make(chan error, 1)
	go func() { o.done <- o.ctl.Run(rctx) }()
	o.http = httptest.NewServer(api.New(o.ctl, o.st, o.srv, nil).Handler())
	o.url = o.http.URL
}

// stop shuts the OMA down as the binary does; stopping twice is harmless.
func (o *omaUnderTest) stop() {
	if o.http == nil {
		return
	}
	o.http.Close()
	o.cancel()
	<-o.done
	o.exp.StopAll()
	o.conn.Close()
	_ = o.srv.Shutdown(context.Background())
	_ = o.st.Close()
	o.http = nil
}

func (o *omaUnderTest) restart() {
	o.stop()
	o.start()
}

// do sends a request with the test token and decodes a JSON answer into out.
func (o *omaUnderTest) do(method, path string, body any, out any) int {
	o.t.Helper()
	return o.doRaw(method, path, "Bearer "+o.token, encode(body), out)
}

func encode(body any) []byte {
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return []byte(b)
	case []byte:
		return b
	default:
		data, _ := json.Marshal(b)
		return data
	}
}

func (o *omaUnderTest) doRaw(method, path, auth string, body []byte, out any) int {
	o.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, o.url+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			o.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// vma is a registered VMA on the bus with its own NKey and X25519 key: the
// test plays the VMA's side of the protocol through it.
type vma struct {
	id   string
	conn *bus.Conn
	key  seal.KeyPair
}

// addVMA registers a VMA through the API and connects it with the
// credentials the OMA returned.
func (o *omaUnderTest) addVMA(id string) *vma {
	o.t.Helper()
	var cred control.VMACredentials
	if code := o.do(http.MethodPost, "/api/v1/vmas", map[string]string{"id": id}, &cred); code != http.StatusCreated {
		o.t.Fatalf("POST /api/v1/vmas = %d", code)
	}
	return o.connectVMA(id, cred.NKeySeed)
}

func (o *omaUnderTest) connectVMA(id, seed string) *vma {
	o.t.Helper()
	inbox, _ := subject.InboxPrefix(id)
	conn := bustest.Connect(o.t, o.srv.ClientURL(), bus.ClientConfig{Name: id, Source: "/godwit/vma/" + id, NKeySeed: []byte(seed), InboxPrefix: inbox})
	kp, err := seal.NewKeyPair()
	if err != nil {
		o.t.Fatal(err)
	}
	v := &vma{id: id, conn: conn, key: kp}
	v.publish(o.t, &events.Heartbeat{VMAID: id, Version: "test", PublicKey: seal.EncodeKey(kp.Public), StartedAt: time.Now().UTC()})
	eventually(o.t, "heartbeat applied", func() bool {
		vmas, _ := o.ctl.VMAs()
		for _, x := range vmas {
			if x.ID == id && x.PublicKey != "" {
				return true
			}
		}
		return false
	})
	return v
}

func (v *vma) publish(t testing.TB, p events.Payload) events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := v.conn.Publish(ctx, p)
	if err != nil {
		t.Fatalf("%s publishes %s: %v", v.id, p.EventType(), err)
	}
	return ev
}

// inventory publishes a discovery result with the given VMs.
func (v *vma) inventory(t testing.TB, vms ...events.VM) {
	t.Helper()
	v.publish(t, &events.DiscoverResult{RequestID: events.NewID(), VMAID: v.id,
		VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: "DatabanxDC"}, VMs: vms})
}

// learn has v discover vms and waits until the OMA's inventory lists them.
func (o *omaUnderTest) learn(v *vma, vms ...events.VM) {
	o.t.Helper()
	v.inventory(o.t, vms...)
	eventually(o.t, "inventory", func() bool {
		var inv struct{ VMs []struct{ ID string } }
		o.do("GET", "/api/v1/vms", nil, &inv)
		known := map[string]bool{}
		for _, vm := range inv.VMs {
			known[vm.ID] = true
		}
		for _, vm := range vms {
			if !known[vm.ID] {
				return false
			}
		}
		return true
	})
}

func testVM(id string, diskSizes ...int64) events.VM {
	vm := events.VM{ID: id, Name: "VM-" + id, Path: "/DatabanxDC/vm/VM-" + id, Datacenter: "DatabanxDC",
		UUID: "uuid-" + id, PowerState: "poweredOn", GuestOS: "otherGuest", NumCPU: 2, MemoryMB: 2048, Firmware: "bios",
		CBTEnabled: true, Networks: []events.Network{}}
	for i, size := range diskSizes {
		vm.Disks = append(vm.Disks, events.Disk{Key: int32(2000 + i), Label: "Hard disk " + strconv.Itoa(i+1),
			CapacityBytes: size, Datastore: "datastore1", File: "[datastore1] " + id + "/disk.vmdk", Thin: true,
			Controller: "SCSI controller 0", UnitNumber: int32(i)})
	}
	return vm
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
