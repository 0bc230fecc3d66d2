package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/testbed"
	"github.com/godwit/godwit/testkit"
)

// omaUnderTest is a whole OMA as the binary runs it (oma/appliance, through
// testbed), and the test's side of the protocol: requests with its token,
// VMAs on the bus. restart stops it and starts it again on the same data.
type omaUnderTest struct {
	*testbed.OMA
	t     testing.TB
	dir   string
	url   string
	token string
	// conn is an admin connection to the OMA's NATS, valid until the next restart.
	conn *bus.Conn
}

// newOMA starts an OMA with a pool of ports NBD ports; configure, when
// given, edits its configuration.
func newOMA(t testing.TB, ports int, configure ...func(*appliance.Config)) *omaUnderTest {
	t.Helper()
	cfg := testbed.OMAConfig{Ports: ports}
	if len(configure) > 0 {
		cfg.Configure = configure[0]
	}
	o := &omaUnderTest{OMA: testbed.StartOMA(t, cfg), t: t}
	o.sync()
	return o
}

// sync copies what the running OMA tells into the short names the tests use.
func (o *omaUnderTest) sync() { o.dir, o.url, o.token, o.conn = o.Dir, o.URL, o.Token, o.Admin }

func (o *omaUnderTest) restart() {
	o.t.Helper()
	o.Restart()
	o.sync()
}

// editStore stops the OMA, changes its state database with edit, as an
// older OMA or an operator could have left it, and starts it again.
func (o *omaUnderTest) editStore(edit func(tx *bbolt.Tx) error) {
	o.t.Helper()
	o.Stop()
	st, err := appliance.OpenStore(o.dir)
	if err != nil {
		o.t.Fatal(err)
	}
	err = st.Update(edit)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		o.t.Fatal(err)
	}
	o.Start()
	o.sync()
}

// do sends a request with the test token and decodes a JSON answer into out.
func (o *omaUnderTest) do(method, path string, body any, out any) int {
	o.t.Helper()
	return o.Do(method, path, body, out)
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
	var cred vmas.Credentials
	// A port of its own, not the lowest free one from 9081: the OMAs of
	// tests running in parallel would each pick the same, and all but one
	// find it held by another when they come to hold it (health degraded).
	// A free port may be one of the OMA's own NBD pool, which it refuses
	// naming api_port: another is tried.
	for attempt := 0; ; attempt++ {
		port, _ := testkit.FreePorts(o.t, 1)
		var answer struct {
			vmas.Credentials
			Field string `json:"field"`
		}
		code := o.do(http.MethodPost, "/api/v1/vmas", map[string]any{"id": id, "api_port": port}, &answer)
		if code == http.StatusCreated {
			cred = answer.Credentials
			break
		}
		if code != http.StatusConflict || answer.Field != "api_port" || attempt == 20 {
			o.t.Fatalf("POST /api/v1/vmas = %d", code)
		}
	}
	return o.connectVMA(id, cred.NKeySeed)
}

func (o *omaUnderTest) connectVMA(id, seed string) *vma {
	o.t.Helper()
	conn := bustest.ConnectVMA(o.t, o.NATSURL, id, []byte(seed))
	kp, err := seal.NewKeyPair()
	if err != nil {
		o.t.Fatal(err)
	}
	v := &vma{id: id, conn: conn, key: kp}
	v.publish(o.t, &events.Heartbeat{VMAID: id, Version: "test", PublicKey: seal.EncodeKey(kp.Public), StartedAt: time.Now().UTC()})
	testkit.Eventually(o.t, "heartbeat applied", func() bool {
		var list struct {
			VMAs []struct {
				ID        string `json:"id"`
				PublicKey string `json:"public_key"`
			} `json:"vmas"`
		}
		o.do("GET", "/api/v1/vmas", nil, &list)
		for _, x := range list.VMAs {
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
	v.publish(t, &events.DiscoverResult{RequestID: bustest.AskDiscovery(t, v.conn, v.id, "vcenter.test"), VMAID: v.id,
		VCenter: events.VCenterRef{Host: "vcenter.test", Datacenter: "DatabanxDC"}, VMs: vms})
}

// learn has v discover vms and waits until the OMA's inventory lists them.
func (o *omaUnderTest) learn(v *vma, vms ...events.VM) {
	o.t.Helper()
	v.inventory(o.t, vms...)
	testkit.Eventually(o.t, "inventory", func() bool {
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
