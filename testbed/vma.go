package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
	"github.com/godwit/godwit/vma/vcsim"
)

// VMAConfig changes the VMA StartVMA starts.
type VMAConfig struct {
	// ID is the VMA's id; empty means vma-1.
	ID string
	// VCenterCAFile is the PEM file of the vCenter to trust (vcsim's CAFile).
	VCenterCAFile string
	// SSHPublicKey is registered as the VMA's SSH key ("ssh-ed25519
	// AAAA..."), for a VMA that reaches the OMA through an SSH tunnel.
	SSHPublicKey string
	// Configure, when set, edits the appliance's configuration before each
	// start (the data dir, addresses and seed are already set).
	Configure func(*appliance.Config)
}

// VMA is a running VMA appliance registered with an OMA.
type VMA struct {
	tb  testing.TB
	cfg appliance.Config
	ext VMAConfig

	// ID is the VMA's id.
	ID string
	// Dir is its data dir.
	Dir string
	// URL is its REST API's base URL.
	URL string
	// MetricsURL is the base URL of its metrics listener, when the
	// configuration sets one.
	MetricsURL string
	// APIPort is the port the OMA holds for its API on 127.0.0.1 and
	// forwards into its tunnel (a free one, not 9081: tests run side by side).
	APIPort int
	// Seed is its NATS NKey seed, as the OMA gave it.
	Seed []byte
	// PublicKey is its X25519 public key.
	PublicKey string
	// Logs holds everything the VMA logged.
	Logs *testkit.Buffer

	run running
}

// StartVMA registers a VMA with o through the OMA's API (POST
// /api/v1/vmas), starts it with the credentials the OMA returned, and
// waits until the OMA has its public key from a heartbeat.
func StartVMA(tb testing.TB, o *OMA, ext VMAConfig) *VMA {
	tb.Helper()
	if ext.ID == "" {
		ext.ID = "vma-1"
	}
	var cred struct {
		NKeySeed string `json:"nkey_seed"`
		APIPort  int    `json:"api_port"`
	}
	reg := map[string]any{"id": ext.ID}
	if ext.SSHPublicKey != "" {
		reg["ssh_public_key"] = ext.SSHPublicKey
	}
	// A free port may still be one of the OMA's own (its NBD pool is free
	// until a job takes it): the OMA refuses those, naming api_port, and
	// another is tried.
	for attempt := 0; ; attempt++ {
		reg["api_port"], _ = testkit.FreePorts(tb, 1)
		var answer struct {
			NKeySeed string `json:"nkey_seed"`
			APIPort  int    `json:"api_port"`
			Field    string `json:"field"`
		}
		code := o.Do(http.MethodPost, "/api/v1/vmas", reg, &answer)
		if code == http.StatusCreated {
			cred.NKeySeed, cred.APIPort = answer.NKeySeed, answer.APIPort
			break
		}
		if code == http.StatusConflict && answer.Field == "api_port" && attempt < 20 {
			continue
		}
		tb.Fatalf("register %s: POST /api/v1/vmas = %d", ext.ID, code)
	}
	v := &VMA{tb: tb, ext: ext, ID: ext.ID, APIPort: cred.APIPort, Dir: tb.TempDir(), Seed: []byte(cred.NKeySeed), Logs: &testkit.Buffer{}}
	v.cfg = appliance.Config{
		DataDir: filepath.Join(v.Dir, "vma"), ID: ext.ID, APIAddr: "127.0.0.1:0", NATSURL: o.NATSURL, NATSSeed: v.Seed,
		OMAURL: o.URL, VCenterCAFile: ext.VCenterCAFile, DiscoverTimeout: testkit.Wait(tb),
		Logger: slog.New(slog.NewTextHandler(v.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if ext.SSHPublicKey != "" { // the OMA holds the port within a second of the registration
		testkit.Eventually(tb, fmt.Sprintf("the OMA holding %s's API port %d", ext.ID, v.APIPort), func() bool {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", v.APIPort), time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	v.Start()
	tb.Cleanup(v.Stop)
	o.WaitForVMAKey(tb, ext.ID, v.PublicKey)
	return v
}

// WaitForVMAKey waits until the OMA has VMA id's public key from a
// heartbeat: key itself, or any key when key is "".
func (o *OMA) WaitForVMAKey(tb testing.TB, id, key string) {
	tb.Helper()
	WaitForVMAKey(tb, o.URL, o.Token, id, key)
}

// WaitForVMAKey waits until the OMA whose API is at url (reached with
// token) has VMA id's public key from a heartbeat: key itself, or any key
// when key is "".
func WaitForVMAKey(tb testing.TB, url, token, id, key string) {
	tb.Helper()
	testkit.Eventually(tb, id+"'s key at the OMA", func() bool {
		var list struct {
			VMAs []struct {
				ID        string `json:"id"`
				PublicKey string `json:"public_key"`
			} `json:"vmas"`
		}
		Do(tb, http.MethodGet, url+"/api/v1/vmas", token, nil, &list)
		for _, x := range list.VMAs {
			if x.ID == id && x.PublicKey != "" && (key == "" || x.PublicKey == key) {
				return true
			}
		}
		return false
	})
}

// RunVMA runs a VMA appliance with cfg in this process until the test
// ends, when it fails the test if Run returned an error; for a VMA set up
// by hand (registered with an OMA process, say). logs, when set, is
// printed if the test failed.
func RunVMA(tb testing.TB, cfg appliance.Config, logs *testkit.Buffer) {
	tb.Helper()
	v, err := appliance.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("vma run: %v", err)
		}
		if tb.Failed() && logs != nil {
			tb.Logf("the VMA's log:\n%s", logs)
		}
	})
}

// Start starts the VMA again after Stop; StartVMA already started it.
func (v *VMA) Start() {
	tb := v.tb
	tb.Helper()
	cfg := v.cfg
	if v.ext.Configure != nil {
		v.ext.Configure(&cfg)
	}
	a, err := appliance.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	v.run.start(tb, "vma", a.Run, a.Ready(), v.Logs)
	v.URL, v.MetricsURL = "http://"+a.Addrs().API, ""
	if m := a.Addrs().Metrics; m != "" {
		v.MetricsURL = "http://" + m
	}
	v.PublicKey = a.Identity().PublicKey()
	v.cfg.APIAddr = a.Addrs().API // the same address after a restart
}

// Stop stops the VMA and waits until everything it started has stopped;
// stopping twice is harmless.
func (v *VMA) Stop() {
	if v.run.cancel != nil {
		v.run.stop(v.tb, "vma")
	}
}

// Do sends a JSON request to the OMA with its token and decodes a JSON
// answer into out when out is not nil. It returns the status code.
func (o *OMA) Do(method, path string, body, out any) int {
	o.tb.Helper()
	return Do(o.tb, method, o.URL+path, o.Token, body, out)
}

// Do sends a JSON request to url, with a bearer token unless token is "",
// and decodes a JSON answer into out when out is not nil. A body that is a
// string or []byte is sent as it is, anything else as JSON.
func Do(tb testing.TB, method, url, token string, body, out any) int {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// Discover asks the OMA at url (with its token) to discover a vCenter,
// body being the request (vcenter, username, password, datacenter), fails
// the test unless it answers 200, and waits until the OMA's inventory lists
// every VM found. It returns the VMs found.
func Discover(tb testing.TB, url, token string, body any) []events.VM {
	tb.Helper()
	var res struct {
		VMs []events.VM `json:"vms"`
	}
	if code := Do(tb, http.MethodPost, url+"/api/v1/discover", token, body, &res); code != http.StatusOK {
		tb.Fatalf("discover through the OMA = %d", code)
	}
	testkit.Eventually(tb, "the OMA's inventory", func() bool {
		var inv struct {
			VMs []any `json:"vms"`
		}
		Do(tb, http.MethodGet, url+"/api/v1/vms", token, nil, &inv)
		return len(inv.VMs) == len(res.VMs)
	})
	return res.VMs
}

// Discover is [Discover] on this OMA.
func (o *OMA) Discover(body any) []events.VM {
	o.tb.Helper()
	return Discover(o.tb, o.URL, o.Token, body)
}

// StartSim starts a simulated vCenter with cfg, closed when the test ends.
func StartSim(tb testing.TB, cfg vcsim.Config) *vcsim.Simulator {
	tb.Helper()
	sim, err := vcsim.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sim.Close)
	return sim
}
