package appliance_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/testkit"
)

// TestNewRefusesBadConfig: a configuration Run could not use is refused
// by New, before anything starts.
func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	halfTLS := appliance.Config{DataDir: dir}
	halfTLS.API.HTTP.TLSCertFile = "cert.pem"
	for name, cfg := range map[string]appliance.Config{
		"no data dir":                  {},
		"bad nats address":             {DataDir: dir, NATSAddr: "nonsense"},
		"bad nats port":                {DataDir: dir, NATSAddr: "127.0.0.1:99999"},
		"reversed pool":                {DataDir: dir, FirstPort: 10199, LastPort: 10100},
		"half TLS":                     halfTLS,
		"bad api address":              {DataDir: dir, APIAddr: "8082"},
		"every interface, plain HTTP":  {DataDir: dir, APIAddr: ":8082"},
		"0.0.0.0, plain HTTP":          {DataDir: dir, APIAddr: "0.0.0.0:8082"},
		"[::], plain HTTP":             {DataDir: dir, APIAddr: "[::]:8082"},
		"a public address, plain HTTP": {DataDir: dir, APIAddr: "192.0.2.10:8082"},
		"a host name, plain HTTP":      {DataDir: dir, APIAddr: "oma.example.com:8082"},
		"a cluster without keys":       {DataDir: dir, Cluster: bus.ClusterConfig{Name: "godwit", Listen: "127.0.0.1:6222"}},
		"a cluster url without keys":   {DataDir: dir, NATSURL: "nats://127.0.0.1:4222"},
		"a node and a cluster url":     {DataDir: dir, KeysDir: dir, NATSURL: "nats://127.0.0.1:4222", Cluster: bus.ClusterConfig{Name: "godwit"}},
		"routes without a cluster":     {DataDir: dir, Cluster: bus.ClusterConfig{Routes: []string{"nats-route://127.0.0.1:6222"}}},
		"replicas on one server":       {DataDir: dir, StreamReplicas: 3},
		"six replicas":                 {DataDir: dir, KeysDir: dir, NATSURL: "nats://127.0.0.1:4222", StreamReplicas: 6},
	} {
		_, err := appliance.New(cfg)
		if err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(name, "plain HTTP") && !strings.Contains(err.Error(), "-api-insecure-http") {
			t.Errorf("%s: New = %v, want an error naming -api-tls-cert and -api-insecure-http", name, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused configuration left %d files in the data dir", len(entries))
	}
}

// TestNewAcceptsSafeAPIAddrs: loopback addresses serve plain HTTP; any
// other needs TLS or APIInsecureHTTP.
func TestNewAcceptsSafeAPIAddrs(t *testing.T) {
	dir := t.TempDir()
	withTLS := appliance.Config{DataDir: dir, APIAddr: ":8082"}
	withTLS.API.HTTP.TLSCertFile, withTLS.API.HTTP.TLSKeyFile = "cert.pem", "key.pem"
	for name, cfg := range map[string]appliance.Config{
		"default":                      {DataDir: dir},
		"127.0.0.1":                    {DataDir: dir, APIAddr: "127.0.0.1:0"},
		"127.0.0.2":                    {DataDir: dir, APIAddr: "127.0.0.2:8082"},
		"::1":                          {DataDir: dir, APIAddr: "[::1]:8082"},
		"localhost":                    {DataDir: dir, APIAddr: "localhost:8082"},
		"every interface, TLS":         withTLS,
		"every interface, insecure ok": {DataDir: dir, APIAddr: ":8082", APIInsecureHTTP: true},
		"public address, insecure ok":  {DataDir: dir, APIAddr: "192.0.2.10:8082", APIInsecureHTTP: true},
	} {
		if _, err := appliance.New(cfg); err != nil {
			t.Errorf("%s: New = %v", name, err)
		}
	}
	if appliance.DefaultAPIAddr != "127.0.0.1:8082" {
		t.Errorf("DefaultAPIAddr = %q, want 127.0.0.1:8082", appliance.DefaultAPIAddr)
	}
}

// TestRunReportsItsAddrsAndStops: Run binds free ports when asked, says
// where once ready, serves, and returns nil once everything it started
// has stopped: the ports are free again and the state can be opened.
func TestRunReportsItsAddrsAndStops(t *testing.T) {
	dir := t.TempDir()
	first, last := testkit.FreePorts(t, 2)
	o, err := appliance.New(appliance.Config{DataDir: dir, APIAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", FirstPort: first, LastPort: last})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	select {
	case <-o.Ready():
	case err := <-done:
		t.Fatalf("Run = %v before ready", err)
	case <-time.After(testkit.Wait(t)):
		t.Fatal("not ready")
	}
	addrs := o.Addrs()
	if !strings.HasPrefix(addrs.NATS, "nats://127.0.0.1:") || strings.HasSuffix(addrs.NATS, ":0") || strings.HasSuffix(addrs.API, ":0") {
		t.Fatalf("addrs = %+v", addrs)
	}
	resp, err := http.Get("http://" + addrs.API + "/api/v1/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health = %v, %v", resp, err)
	}
	resp.Body.Close()
	for _, f := range []string{o.Files().InitialToken, o.Files().Observer, o.Files().Admin, filepath.Join(dir, "state.db"), filepath.Join(dir, "at-rest.key")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after a clean stop", err)
	}
	for _, a := range []string{addrs.API, strings.TrimPrefix(addrs.NATS, "nats://")} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still taken after Run returned: %v", a, err)
			continue
		}
		l.Close()
	}
	st, err := appliance.OpenStore(dir)
	if err != nil {
		t.Fatalf("the state is still held after Run returned: %v", err)
	}
	st.Close()
}

// TestAtRestKeyFile: the key that seals the vCenters' passwords is made on
// first start where AtRestKeyFile says, mode 0600, kept across starts; one
// others may read stops the OMA before it serves.
func TestAtRestKeyFile(t *testing.T) {
	dir, keys := t.TempDir(), t.TempDir()
	key := filepath.Join(keys, "godwit.key")
	run := func() error {
		first, last := testkit.FreePorts(t, 2)
		o, err := appliance.New(appliance.Config{DataDir: dir, APIAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", FirstPort: first, LastPort: last, AtRestKeyFile: key})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		select {
		case <-o.Ready():
			cancel()
			return <-done
		case err := <-done:
			return err
		}
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, want a key of mode 0600", key, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "at-rest.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key in the data dir too: %v", err)
	}
	made, _ := os.ReadFile(key)
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(key); !bytes.Equal(made, again) {
		t.Error("a second start changed the key: the stored passwords could not be opened")
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a key others may read: Run = %v, want a refusal saying chmod 600", err)
	}
}
