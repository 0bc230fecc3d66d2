package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
	"github.com/godwit/godwit/vma/appliance"
)

func TestPubkey(t *testing.T) {
	dir := t.TempDir()
	var out1, out2, errOut bytes.Buffer
	if err := dispatch(context.Background(), []string{"pubkey", "-data", dir, "-id", "vma-7"}, &out1, &errOut); err != nil {
		t.Fatal(err)
	}
	if err := dispatch(context.Background(), []string{"pubkey", "-data", dir}, &out2, &errOut); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out1.String())
	if len(key) != 44 || key != strings.TrimSpace(out2.String()) {
		t.Errorf("pubkey = %q then %q", key, out2.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, "identity.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file %v %v", fi, err)
	}
	var ssh1, ssh2 bytes.Buffer
	for _, out := range []*bytes.Buffer{&ssh1, &ssh2} {
		if err := dispatch(context.Background(), []string{"pubkey", "-ssh", "-data", dir}, out, &errOut); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(ssh1.String(), "ssh-ed25519 AAAA") || ssh1.String() != ssh2.String() {
		t.Errorf("pubkey -ssh = %q then %q, want one ssh-ed25519 key", ssh1.String(), ssh2.String())
	}
}

// TestRunHeartbeatsAndServes runs the VMA's body against a real bus: it
// announces itself with its public key and serves health.
func TestRunHeartbeatsAndServes(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": pub}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := testkit.Context(t)
	if err := oma.EnsureVMAConsumers(ctx, "vma-1"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "nats.seed")
	_ = os.WriteFile(seedFile, seed, 0o600)
	var logs testkit.Buffer
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(rctx, []string{"-data", filepath.Join(dir, "vma"), "-id", "vma-1", "-nats-url", srv.ClientURL(),
			"-nats-seed", seedFile, "-api-addr", "127.0.0.1:0"}, &logs)
	}()
	re := regexp.MustCompile(`msg="vma ready" vma=vma-1 api=(\S+) public_key=(\S+)`)
	var m []string
	for m == nil {
		if m = re.FindStringSubmatch(logs.String()); m == nil {
			select {
			case err := <-done:
				t.Fatalf("vma exited: %v\n%s", err, logs.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	s, _ := oma.JetStream().Stream(ctx, bus.StreamPresence)
	var hb events.Heartbeat
	for {
		if msg, err := s.GetLastMsgForSubject(ctx, "godwit.vma.heartbeat.vma-1"); err == nil {
			var ev events.Event
			_ = json.Unmarshal(msg.Data, &ev)
			_ = ev.Decode(&hb)
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no heartbeat")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if hb.VMAID != "vma-1" || hb.PublicKey != strings.Trim(m[2], `"`) || hb.Version != appliance.Version {
		t.Errorf("heartbeat = %+v, want public key %s", hb, m[2])
	}
	resp, err := http.Get("http://" + m[1] + "/api/v1/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health = %v %v", resp, err)
	}
	resp.Body.Close()
	if strings.Contains(logs.String(), string(seed)) {
		t.Error("the NATS seed is in the log")
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestRunNeedsItsSeed(t *testing.T) {
	var logs testkit.Buffer
	if err := run(context.Background(), []string{"-data", t.TempDir()}, &logs); err == nil || !strings.Contains(err.Error(), "-nats-seed") {
		t.Errorf("run without -nats-seed = %v", err)
	}
}

// TestCommandLineRefusesWhatItDoesNotKnow: `vma clone` or a stray argument
// is an error naming the known commands, never a running VMA.
func TestCommandLineRefusesWhatItDoesNotKnow(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "nats.seed")
	_ = os.WriteFile(seedFile, []byte("SUAEXAMPLE"), 0o600)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"clone"}, `unknown command "clone"`},
		{[]string{"bogus", "-data", dir}, `unknown command "bogus"`},
		{[]string{"-data", dir, "-nats-seed", "x", "stray"}, `unexpected argument "stray"`},
		{[]string{"pubkey", "-data", dir, "extra"}, `unexpected argument "extra"`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-rate", "fast"}, `-rate "fast"`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-tunnel-sockbuf", "big"}, `-tunnel-sockbuf "big"`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-tunnel-sockbuf", "2G"}, `-tunnel-sockbuf "2G"`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-source", "tape"}, `source "tape"`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-max-jobs", "-1"}, `max jobs -1`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-tunnel", "oma:22"}, `want ssh://user@host`},
		{[]string{"-data", dir, "-nats-seed", seedFile, "-tunnel", "ssh://godwit:secret@oma"}, `no password in the URL`},
	} {
		var out, errOut bytes.Buffer
		err := dispatch(context.Background(), tt.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("vma %v = %v, want %q", tt.args, err, tt.want)
		}
	}
	var out, errOut bytes.Buffer
	_ = dispatch(context.Background(), []string{"-h"}, &out, &errOut)
	for _, want := range []string{"vma pubkey", "vma copy", "-api-addr", "127.0.0.1:8081", "-nats-seed"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("vma -h does not mention %s:\n%s", want, errOut.String())
		}
	}
}

// TestExitStatus: -h prints the usage and exits 0; an error exits 1, said on stderr.
func TestExitStatus(t *testing.T) {
	for _, tt := range []struct {
		name        string
		args        []string
		want        int
		usage, said string
	}{
		{"help", []string{"-h"}, 0, "Usage:", ""},
		{"help lists pubkey -ssh", []string{"-h"}, 0, "vma pubkey -ssh", ""},
		{"help by name", []string{"help"}, 0, "vma pubkey -ssh", ""},
		{"a subcommand's help", []string{"pubkey", "-h"}, 0, "-ssh", ""},
		{"version", []string{"-version"}, 0, "vma ", ""},
		{"unknown flag", []string{"-bogus"}, 1, "", "vma: "},
		{"unknown command", []string{"bogus"}, 1, "", "vma: unknown command"},
	} {
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
