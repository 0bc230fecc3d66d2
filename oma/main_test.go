package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/testkit"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// running is an oma process body started by run.
type running struct {
	cancel context.CancelFunc
	done   chan error
	logs   *testkit.Buffer
	api    string
	nats   string
}

func startOMA(t *testing.T, dir string, extra ...string) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), logs: &testkit.Buffer{}, nats: freeAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	args := append([]string{"-data", dir, "-nats-addr", r.nats, "-api-addr", "127.0.0.1:0", "-nbd-ports", "20000-20001"}, extra...)
	go func() { r.done <- run(ctx, args, r.logs) }()
	deadline := time.Now().Add(testkit.Wait(t))
	re := regexp.MustCompile(`msg="oma ready" api=(\S+)`)
	for {
		if m := re.FindStringSubmatch(r.logs.String()); m != nil {
			r.api = "http://" + m[1]
			break
		}
		select {
		case err := <-r.done:
			t.Fatalf("oma exited: %v\n%s", err, r.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("oma not ready:\n%s", r.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(testkit.Wait(t)):
		t.Fatal("oma did not stop")
	}
}

func (r *running) get(t *testing.T, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.api+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunAndSubcommands runs the OMA binary's body twice on one data dir,
// with the subcommands in between.
func TestRunAndSubcommands(t *testing.T) {
	dir := t.TempDir()
	r := startOMA(t, dir)
	initial, err := os.ReadFile(filepath.Join(dir, "initial-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(initial))
	for _, f := range []string{"initial-token", "observer.nk", "admin.nk", "state.db"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
	if code := r.get(t, "/api/v1/health", ""); code != 200 {
		t.Errorf("health = %d", code)
	}
	if code := r.get(t, "/api/v1/replications", token); code != 200 {
		t.Errorf("GET replications with the initial token = %d", code)
	}
	if code := r.get(t, "/api/v1/replications", ""); code != 401 {
		t.Errorf("GET replications without a token = %d", code)
	}

	// The observer and the admin reach NATS with their key files.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obsSeed, _ := os.ReadFile(filepath.Join(dir, "observer.nk"))
	adminSeed, _ := os.ReadFile(filepath.Join(dir, "admin.nk"))
	obs, err := bus.Connect(ctx, "nats://"+r.nats, bus.ClientConfig{NKeySeed: obsSeed, JSAPIPrefix: bus.ObserverAPIPrefix})
	if err != nil {
		t.Fatalf("observer connect: %v", err)
	}
	defer obs.Close()
	adm, err := bus.Connect(ctx, "nats://"+r.nats, bus.ClientConfig{NKeySeed: adminSeed, Source: "/godwit/test"})
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	ev, err := adm.Publish(ctx, &events.ReplicateCancel{JobID: "job-1", VMAID: "vma-1"})
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := obs.JetStream().Stream(ctx, bus.StreamCommands)
	if m, err := s.GetLastMsgForSubject(ctx, "godwit.replicate.cancel.vma-1"); err != nil || !strings.Contains(string(m.Data), ev.ID) {
		t.Errorf("observer get = %v", err)
	}

	// While it runs, the subcommands say the state is in use.
	var out, errOut bytes.Buffer
	if err := dispatch(ctx, []string{"token", "create", "--name", "ops", "-data", dir}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("token create on a running OMA = %v", err)
	}
	if err := dispatch(ctx, []string{"vma", "add", "--id", "vma-1", "-data", dir}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "POST /api/v1/vmas") {
		t.Errorf("vma add on a running OMA = %v", err)
	}
	r.stop(t)

	// Stopped: they work.
	out.Reset()
	if err := dispatch(ctx, []string{"token", "create", "--name", "ops", "-data", dir}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	opsToken := strings.TrimSpace(out.String())
	out.Reset()
	if err := dispatch(ctx, []string{"vma", "add", "--id", "vma-1", "-data", dir}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	seed := regexp.MustCompile(`(?m)^(SU\S+)$`).FindStringSubmatch(out.String())
	if seed == nil || !strings.Contains(out.String(), "GODWIT_ID=vma-1\n") || !strings.Contains(out.String(), "GODWIT_NATS_SEED") {
		t.Fatalf("vma add printed:\n%s", out.String())
	}
	if err := dispatch(ctx, []string{"vma", "add", "--id", "vma.1", "-data", dir}, &out, &errOut); err == nil {
		t.Error("vma add took a hostile id")
	}
	if err := dispatch(ctx, []string{"vma", "add", "--id", "vma-1", "-data", dir}, &out, &errOut); err == nil {
		t.Error("vma add registered vma-1 twice")
	}

	// A config file sets flags the command line does not.
	cfgFile := filepath.Join(t.TempDir(), "oma.json")
	_ = os.WriteFile(cfgFile, []byte(`{"discover-timeout": "5s", "nbd-ports": "20010-20011", "stream-max-bytes": 2147483648}`), 0o600)
	r = startOMA(t, dir, "-config", cfgFile)
	defer r.stop(t)
	if code := r.get(t, "/api/v1/vmas", opsToken); code != 200 {
		t.Errorf("GET vmas with the new token = %d", code)
	}
	vma, err := bus.Connect(ctx, "nats://"+r.nats, bus.ClientConfig{NKeySeed: []byte(seed[1])})
	if err != nil {
		t.Fatalf("the registered VMA cannot connect: %v", err)
	}
	vma.Close()
	if _, err := os.Stat(filepath.Join(dir, "initial-token")); err != nil {
		t.Error("initial-token vanished")
	}
	logs := r.logs.String()
	for _, secret := range []string{token, opsToken, seed[1], string(bytes.TrimSpace(obsSeed)), string(bytes.TrimSpace(adminSeed))} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret is in the log")
		}
	}
}

func TestBadFlagsAndConfig(t *testing.T) {
	var logs testkit.Buffer
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`{"colour": "red"}`), 0o600)
	for _, args := range [][]string{
		{"-nats-addr", "nonsense"},
		{"-nbd-ports", "10199-10100"},
		{"-nbd-ports", "many"},
		{"-nbd-ports-per-vma", "0"},
		{"-nbd-ports-per-vma", "-3"},
		{"-config", bad},
		{"-config", "/nonexistent.json"},
		{"-api-addr", "0.0.0.0:0"},
		{"-api-addr", ":0"},
		{"-api-body-timeout", "0s"},
		{"-api-max-conns", "0"},
		{"-verify-parallel", "0"},
		{"-verify-rate", "-1"},
	} {
		if err := run(context.Background(), append(args, "-data", t.TempDir()), &logs); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
	t.Setenv("GODWIT_NBD_PORTS", "oops")
	if err := run(context.Background(), []string{"-data", t.TempDir()}, &logs); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("run with a bad $GODWIT_NBD_PORTS = %v", err)
	}
	if err := dispatch(context.Background(), []string{"token"}, &logs, &logs); err == nil {
		t.Error("oma token without a verb succeeded")
	}
}

// TestAPIFlags: the API listens on loopback by default; -api-insecure-http,
// -api-body-timeout and -api-max-conns reach the appliance's configuration.
func TestAPIFlags(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		addr     string
		insecure bool
		body     time.Duration
		conns    int
	}{
		{nil, "127.0.0.1:8082", false, 30 * time.Second, 256},
		{[]string{"-api-addr", ":8082", "-api-insecure-http", "-api-body-timeout", "5s", "-api-max-conns", "10"}, ":8082", true, 5 * time.Second, 10},
	} {
		var cfg config
		fs := newFlagSet("oma", &cfg, io.Discard)
		declareRunFlags(fs, &cfg)
		if err := parse(fs, tt.args); err != nil {
			t.Fatal(err)
		}
		ac, err := cfg.appliance()
		if err != nil {
			t.Fatal(err)
		}
		if ac.APIAddr != tt.addr || ac.APIInsecureHTTP != tt.insecure || ac.API.HTTP.BodyTimeout != tt.body || ac.API.HTTP.MaxConns != tt.conns {
			t.Errorf("%v: addr %q insecure %v body %s conns %d, want %q %v %s %d", tt.args, ac.APIAddr, ac.APIInsecureHTTP,
				ac.API.HTTP.BodyTimeout, ac.API.HTTP.MaxConns, tt.addr, tt.insecure, tt.body, tt.conns)
		}
	}
	err := run(context.Background(), []string{"-data", t.TempDir(), "-api-addr", "0.0.0.0:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-api-insecure-http") || !strings.Contains(err.Error(), "-api-tls-cert") {
		t.Errorf("run -api-addr 0.0.0.0:0 = %v, want a refusal naming -api-tls-cert and -api-insecure-http", err)
	}
}

// TestCommandLineRefusesWhatItDoesNotKnow: an unknown subcommand or a
// stray argument is an error naming the known commands, never a running
// OMA; -h lists the subcommands as well as the flags.
func TestCommandLineRefusesWhatItDoesNotKnow(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"token", "delete"}, `unknown command "token delete"`},
		{[]string{"jobs", "purge", "j1"}, `unknown command "jobs purge"`},
		{[]string{"vma", "remove", "-id", "x"}, `unknown command "vma remove"`},
		{[]string{"-data", dir, "stray"}, `unexpected argument "stray"`},
		{[]string{"token", "create", "-name", "x", "-data", dir, "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := dispatch(ctx, tt.args, &out, &errOut)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("oma %v = %v, want %q", tt.args, err, tt.want)
		}
		if strings.HasPrefix(tt.want, "unknown") && tt.args[0] == "bogus" && (!strings.Contains(err.Error(), "token create") || !strings.Contains(err.Error(), "vma add")) {
			t.Errorf("oma %v = %v: does not name the known commands", tt.args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Error("a refused command line created state")
	}
	var out, errOut bytes.Buffer
	_ = dispatch(context.Background(), []string{"-h"}, &out, &errOut)
	for _, want := range []string{"oma token create", "oma vma add", "-api-addr", "-nbd-ports"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("oma -h does not mention %s:\n%s", want, errOut.String())
		}
	}
}

// TestVMAAddSeedOut writes the VMA's seed to a 0600 file and prints the
// variables the vma reads, none of them the seed itself.
func TestVMAAddSeedOut(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(t.TempDir(), "vma-1.nk")
	var out, errOut bytes.Buffer
	if err := dispatch(context.Background(), []string{"vma", "add", "-id", "vma-1", "-data", dir, "-seed-out", seedFile}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(seedFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, want mode 0600", err)
	}
	seed, _ := os.ReadFile(seedFile)
	if !bytes.HasPrefix(seed, []byte("SU")) || strings.Contains(out.String(), strings.TrimSpace(string(seed))) {
		t.Errorf("seed file %q; printed:\n%s", seed, out.String())
	}
	for _, want := range []string{"GODWIT_ID=vma-1\n", "GODWIT_NATS_SEED=" + seedFile + "\n", "GODWIT_NATS_URL=", "GODWIT_OMA_URL="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("vma add printed no %q:\n%s", want, out.String())
		}
	}
	// Never over an existing file, and nothing is registered then.
	if err := dispatch(context.Background(), []string{"vma", "add", "-id", "vma-2", "-data", dir, "-seed-out", seedFile}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("vma add over an existing seed file = %v", err)
	}
	if err := dispatch(context.Background(), []string{"vma", "add", "-id", "vma-2", "-data", dir}, &out, &errOut); err != nil {
		t.Errorf("vma-2 was registered by the refused command: %v", err)
	}
}

// TestExitStatus: -h prints the usage and exits 0; an error exits 1, said on stderr.
func TestExitStatus(t *testing.T) {
	for _, tt := range []struct {
		name        string
		args        []string
		want        int
		usage, said string
	}{{"help", []string{"-h"}, 0, "Usage:", ""}, {"a subcommand's help", []string{"token", "create", "-h"}, 0, "-name", ""}, {"unknown command", []string{"bogus"}, 1, "", "oma: unknown command"}} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := exitStatus(dispatch(context.Background(), tt.args, &out, &errOut), &errOut)
			if code != tt.want || !strings.Contains(out.String()+errOut.String(), tt.usage) || !strings.Contains(errOut.String(), tt.said) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d with %q and %q on stderr", tt.args, code, out.String(), errOut.String(), tt.want, tt.usage, tt.said)
			}
			if tt.want == 0 && strings.Contains(errOut.String(), "help requested") {
				t.Errorf("%v: stderr says %q", tt.args, errOut.String())
			}
		})
	}
}

// TestTokenCreateScope: oma token create makes an operate token unless
// -scope says otherwise, and refuses a scope it does not know.
func TestTokenCreateScope(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	for _, args := range [][]string{{"-name", "ops"}, {"-name", "viewer", "-scope", "read"}, {"-name", "boss", "-scope", "admin"}} {
		if err := dispatch(context.Background(), append([]string{"token", "create", "-data", dir}, args...), &out, io.Discard); err != nil {
			t.Fatalf("token create %v: %v", args, err)
		}
	}
	err := dispatch(context.Background(), []string{"token", "create", "-data", dir, "-name", "x", "-scope", "root"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-scope") {
		t.Errorf("token create -scope root = %v, want an error naming -scope", err)
	}
	st, err := appliance.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, _ := tokens.List(st)
	got := map[string]tokens.Scope{}
	for _, i := range list {
		got[i.Name] = i.Scope
	}
	if want := map[string]tokens.Scope{"ops": tokens.Operate, "viewer": tokens.Read, "boss": tokens.Admin}; len(got) != 3 ||
		got["ops"] != want["ops"] || got["viewer"] != want["viewer"] || got["boss"] != want["boss"] {
		t.Errorf("tokens = %v, want %v", got, want)
	}
}

// TestHelpAndVersion: help is there for every command, on stdout when
// asked for by name (oma help), on stderr with -h, always exit 0; -version
// prints the version; a command group without its verb says which verbs
// it has and exits 1.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name           string
		args           []string
		want           int
		stdout, stderr []string
	}{
		{"help", []string{"help"}, 0, []string{"oma token create", "oma vma add", "oma jobs show", "oma vms", "-api-addr", "-version"}, nil},
		{"help on a command", []string{"help", "jobs"}, 0, []string{"oma jobs show", "oma jobs cancel"}, nil},
		{"help on an unknown command", []string{"help", "bogus"}, 1, nil, []string{`unknown command "bogus"`}},
		{"token -h", []string{"token", "-h"}, 0, nil, []string{"oma token create"}},
		{"token help", []string{"token", "help"}, 0, []string{"oma token create"}, nil},
		{"vma -h", []string{"vma", "-h"}, 0, nil, []string{"oma vma add", "oma vma authorized-keys"}},
		{"jobs -h", []string{"jobs", "-h"}, 0, nil, []string{"oma jobs show JOB", "oma jobs cancel JOB"}},
		{"jobs show -h", []string{"jobs", "show", "-h"}, 0, nil, []string{"oma jobs show JOB"}},
		{"jobs list -h", []string{"jobs", "list", "-h"}, 0, nil, []string{"-api-url", "-token-file", "-state"}},
		{"vms -h", []string{"vms", "-h"}, 0, nil, []string{"-api-url", "-json"}},
		{"watch -h", []string{"watch", "-h"}, 0, nil, []string{"-nats-url"}},
		{"-version", []string{"-version"}, 0, []string{"oma "}, nil},
		{"version", []string{"version"}, 0, []string{"oma "}, nil},
		{"token without its verb", []string{"token"}, 1, nil, []string{"oma token needs a command: oma token create"}},
		{"vma without its verb", []string{"vma"}, 1, nil, []string{"oma vma add, oma vma authorized-keys"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := exitStatus(dispatch(context.Background(), tt.args, &out, &errOut), &errOut)
			if code != tt.want {
				t.Errorf("oma %v: exit %d, want %d; stderr %q", tt.args, code, tt.want, errOut.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("oma %v: stdout %q lacks %q", tt.args, out.String(), w)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("oma %v: stderr %q lacks %q", tt.args, errOut.String(), w)
				}
			}
			if strings.Contains(errOut.String(), "help requested") || strings.Contains(out.String()+errOut.String(), "unknown command") != (tt.name == "help on an unknown command") {
				t.Errorf("oma %v: stdout %q, stderr %q", tt.args, out.String(), errOut.String())
			}
		})
	}
}

// TestVersionStamp builds the oma as the Makefile does, with the version
// stamped in by -ldflags, and runs it: -version prints that stamp.
func TestVersionStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the oma binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "oma")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/godwit/godwit/version.stamp=v9.9.9-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "oma v9.9.9-test (go") {
		t.Errorf("oma -version = %q, %v; want oma v9.9.9-test (go...)", out, err)
	}
}
