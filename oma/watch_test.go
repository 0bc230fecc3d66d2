package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/testkit"
)

// TestWatchOutlastsAuthorizationErrors: when the OMA's server restarts
// without knowing the observer yet, `oma watch` is refused again and
// again, keeps trying, and prints job events again once it is let in.
func TestWatchOutlastsAuthorizationErrors(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "observer.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, errs := &testkit.Buffer{}, &testkit.Buffer{}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s\nstdout:\n%s\nstderr:\n%s", what, out, errs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// serve starts a server on port (-1: any) and publishes job events
	// on it until watch prints the one for job.
	serve := func(port int, access bus.Access) *bus.Server {
		t.Helper()
		var srv *bus.Server
		wait("a NATS server", func() bool { // the port may still be held by the last one
			srv, err = bus.StartServer(ctx, bus.ServerConfig{StoreDir: t.TempDir(), Port: port, Access: access})
			return err == nil
		})
		return srv
	}
	printed := func(srv *bus.Server, job string) {
		t.Helper()
		oma, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Source: "/godwit/oma"})
		if err != nil {
			t.Fatal(err)
		}
		defer oma.Close()
		if err := oma.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
			t.Fatal(err)
		}
		wait("watch printing "+job, func() bool { // watch may not have subscribed yet
			ev := &events.JobStateChanged{JobID: job, VMAID: "vma-1", From: events.JobQueued, To: events.JobCopying, ChangedAt: time.Now().UTC()}
			if _, err := oma.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			return strings.Contains(out.String(), job)
		})
	}

	observer := bus.Access{Observers: []string{pub}}
	first := serve(-1, observer)
	u, _ := url.Parse(first.ClientURL())
	port, _ := strconv.Atoi(u.Port())
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- watch(wctx, []string{"-nats-url", first.ClientURL(), "-nkey", seedFile}, out, errs) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("watch = %v", err)
		}
	}()
	printed(first, "job-1")

	_ = first.Shutdown(ctx)
	second := serve(port, bus.Access{}) // restarted, the observer not loaded yet
	defer second.Shutdown(context.Background())
	// nats.go closed the connection for good after the second refusal.
	wait("three refusals", func() bool { return strings.Count(errs.String(), "authorization violation") >= 3 })
	if err := second.SetAccess(observer); err != nil {
		t.Fatal(err)
	}
	printed(second, "job-2")
}
