package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunServesTheBackbone starts the OMA twice on one data dir: the
// observer identity survives, and the observer sees the streams.
func TestRunServesTheBackbone(t *testing.T) {
	dir := t.TempDir()
	var firstSeed []byte
	for round := range 2 {
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		var logs syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-data", dir, "-nats-addr", addr, "-api-addr", "127.0.0.1:0", "-nbd-ports", "20000-20001"}, &logs)
		}()

		seedPath := filepath.Join(dir, "observer.nk")
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), "oma ready") {
			if time.Now().After(deadline) {
				t.Fatalf("oma not ready:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		fi, err := os.Stat(seedPath)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("observer seed %v, %v: want mode 0600", fi, err)
		}
		seed, _ := os.ReadFile(seedPath)
		if round == 0 {
			firstSeed = seed
		} else if !bytes.Equal(seed, firstSeed) {
			t.Error("observer identity changed across restarts")
		}
		if strings.Contains(logs.String(), string(seed)) {
			t.Error("the observer seed was logged")
		}

		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := bus.Connect(cctx, "nats://"+addr, bus.ClientConfig{NKeySeed: seed})
		if err != nil {
			t.Fatalf("observer connect: %v", err)
		}
		n := 0
		for range c.JetStream().StreamNames(cctx).Name() {
			n++
		}
		if n != 5 {
			t.Errorf("observer sees %d streams, want 5", n)
		}
		// The admin may publish; the observer sees the event.
		adminSeed, _ := os.ReadFile(filepath.Join(dir, "admin.nk"))
		a, err := bus.Connect(cctx, "nats://"+addr, bus.ClientConfig{NKeySeed: adminSeed, Source: "/godwit/test"})
		if err != nil {
			t.Fatalf("admin connect: %v", err)
		}
		ev, err := a.Publish(cctx, &events.ReplicateCancel{JobID: "job-1", VMAID: "vma-1"})
		if err != nil {
			t.Fatalf("admin publish: %v", err)
		}
		a.Close()
		s, err := c.JetStream().Stream(cctx, bus.StreamCommands)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(cctx, "godwit.replicate.cancel.vma-1")
		if err != nil || !strings.Contains(string(m.Data), ev.ID) {
			t.Errorf("observer get = %v, want event %s", err, ev.ID)
		}
		c.Close()
		ccancel()

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("oma did not stop")
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var logs syncBuffer
	if err := run(context.Background(), []string{"-nats-addr", "nonsense"}, &logs); err == nil || !strings.Contains(err.Error(), "-nats-addr") {
		t.Errorf("run(-nats-addr nonsense) = %v", err)
	}
}
