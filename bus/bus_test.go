package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/schema"
	"github.com/godwit/godwit/testkit"
)

// ctxT returns a context that ends after d: a failure expected within d
// (a refused connect retries until its context ends) or work bounded by it.
func ctxT(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startWithVMAs starts a server that admits a VMA of its own user for each
// of ids, connects the OMA and makes each VMA's consumers. It returns the
// server, the OMA's connection and the VMAs' users, in the order of ids.
func startWithVMAs(ctx context.Context, t testing.TB, ids ...string) (*bus.Server, *bus.Conn, []bustest.User) {
	t.Helper()
	access := bus.Access{VMAs: map[string]string{}}
	users := make([]bustest.User, len(ids))
	for i, id := range ids {
		users[i] = bustest.NewUser(t)
		access.VMAs[id] = users[i].PublicKey
	}
	srv := bustest.StartServer(t, "", access)
	oma := bustest.ConnectOMA(t, srv)
	for _, id := range ids {
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	return srv, oma, users
}

func progress(vma, job string, seq uint64) *events.Progress {
	return &events.Progress{JobID: job, VMAID: vma, Seq: seq, Phase: events.PhaseCopying,
		BytesTotal: 100, BytesDone: int64(seq), Disks: []events.DiskProgress{{Key: 2000, BytesTotal: 100, BytesDone: int64(seq)}}}
}

func streamMsgs(t testing.TB, c *bus.Conn, stream string) uint64 {
	t.Helper()
	s, err := c.JetStream().Stream(ctxT(t, 5*time.Second), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStartServer(t *testing.T) {
	t.Parallel()
	if _, err := bus.StartServer(ctxT(t, 5*time.Second), bus.ServerConfig{}); err == nil {
		t.Error("StartServer without a store dir succeeded")
	}
	srv, err := bus.StartServer(ctxT(t, 10*time.Second), bus.ServerConfig{StoreDir: t.TempDir(), Port: -1, MonitorPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Errorf("ClientURL = %q, want loopback by default", srv.ClientURL())
	}
	if !srv.JetStreamEnabled() {
		t.Error("JetStream is off")
	}
	resp, err := http.Get(srv.MonitorURL() + "/jsz")
	if err != nil {
		t.Fatalf("monitoring endpoint: %v", err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Config struct {
			StoreDir string `json:"store_dir"`
		} `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil || jsz.Config.StoreDir == "" {
		t.Errorf("/jsz = %+v, %v", jsz, err)
	}

	quiet := bustest.StartServer(t, "", bus.Access{})
	if quiet.MonitorURL() != "" {
		t.Errorf("MonitorURL = %q with monitoring off", quiet.MonitorURL())
	}
	// An anonymous client is refused: only known keys get in.
	ctx := ctxT(t, 2*time.Second)
	if c, err := bus.Connect(ctx, quiet.ClientURL(), bus.ClientConfig{}); err == nil {
		c.Close()
		t.Error("anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect error %v does not say authorization", err)
	}
}

func TestEnsureStreamsIsIdempotent(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 10*time.Second)
	limits := bus.StreamLimits{MaxAge: time.Hour, MaxBytes: 1 << 20}
	for range 2 {
		if err := oma.EnsureStreams(ctx, limits); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for name := range oma.JetStream().StreamNames(ctx).Name() {
		names = append(names, name)
	}
	if want := len(bus.StreamConfigs(limits)); len(names) != want || want != 9 {
		t.Errorf("streams = %v, want the 9 of StreamConfigs", names)
	}
	for _, want := range bus.StreamConfigs(limits) {
		s, err := oma.JetStream().Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		got := s.CachedInfo().Config
		if got.MaxAge != time.Hour || got.MaxBytes != 1<<20 || got.Retention != jetstream.LimitsPolicy ||
			got.Storage != jetstream.FileStorage || got.Duplicates != 2*time.Minute {
			t.Errorf("stream %s config = age %v bytes %d retention %v storage %v dup %v", want.Name,
				got.MaxAge, got.MaxBytes, got.Retention, got.Storage, got.Duplicates)
		}
	}
	// New limits update the streams in place.
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{MaxAge: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	s, _ := oma.JetStream().Stream(ctx, bus.StreamProgress)
	if got := s.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Errorf("MaxAge after update = %v, want 2h", got)
	}
}

func TestPublishRetryIsStoredOnce(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 10*time.Second)
	ev, err := oma.Publish(ctx, progress("vma-1", "job-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := oma.PublishEvent(ctx, ev) // the retry of a publish whose ack was lost
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		t.Error("retried publish was not reported as a duplicate")
	}
	if n := streamMsgs(t, oma, bus.StreamProgress); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
	// The stored message carries the event id as Nats-Msg-Id.
	s, _ := oma.JetStream().Stream(ctx, bus.StreamProgress)
	raw, err := s.GetLastMsgForSubject(ctx, "godwit.progress.vma-1.job-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, ev.ID)
	}
	if got := raw.Header.Get("Content-Type"); got != bus.ContentType {
		t.Errorf("Content-Type = %q", got)
	}
}

// TestPublishFromAVMADuringReloadsIsStored publishes from a VMA, and asks
// the OMA for export allocations, while the server reloads its accounts
// again and again (VMAs registered): a reload takes the VMA's service
// imports away for a moment. A publish that then has no responders is tried
// again under its message id until stored, once (by the jetstream package,
// twice 250 ms apart, then by Publish for up to publishRetry);
// RequestServed asks again.
func TestPublishFromAVMADuringReloadsIsStored(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 2*time.Minute)
	srv, oma, users := startWithVMAs(ctx, t, "vma-1")
	vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", users[0].Seed)
	stop := make(chan struct{})
	reloads := make(chan int)
	go func() {
		n := 0
		defer func() { reloads <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			access := bus.Access{VMAs: map[string]string{"vma-1": users[0].PublicKey}}
			if n%2 == 0 { // a new VMA each time: its account is made anew
				access.VMAs[fmt.Sprintf("vma-x%d", n)] = bustest.NewUser(t).PublicKey
			}
			if err := srv.SetAccess(access); err != nil {
				t.Errorf("reload %d: %v", n, err)
				return
			}
		}
	}()
	err := oma.Serve(ctx, "godwit.export.request.*.*", "oma", bus.ExportReplies, func(_ context.Context, subj string, _ []byte) (any, error) {
		return map[string]string{"subject": subj}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const publishers, each = 4, 100
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				subj := fmt.Sprintf("godwit.export.request.vma-1.job-%d-%d", p, i)
				var got map[string]string
				if err := vma.RequestServed(ctx, subj, struct{}{}, &got); err != nil || got["subject"] != subj {
					t.Errorf("request %s: %v, %v", subj, got, err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range each {
				if _, err := vma.Publish(ctx, progress("vma-1", fmt.Sprintf("job-%d", p), uint64(i+1))); err != nil {
					t.Errorf("publish %d of job-%d: %v", i, p, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if n := <-reloads; n < 2 {
		t.Fatalf("only %d reloads while publishing", n)
	}
	if n := streamMsgs(t, oma, bus.StreamProgress); n != publishers*each {
		t.Errorf("PROGRESS holds %d messages, want %d", n, publishers*each)
	}
}

func TestPublishRejectsInvalidPayload(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 10*time.Second)
	bad := progress("vma-1", "job-1", 1)
	bad.Phase = "dreaming"
	_, err := oma.Publish(ctx, bad)
	var se *schema.Error
	if !errors.As(err, &se) || se.Path != "$.data.phase" {
		t.Errorf("Publish(bad phase) = %v, want a schema error at $.data.phase", err)
	}
	if _, err := oma.Publish(ctx, progress("vma.1", "job-1", 1)); !errors.Is(err, subject.ErrInvalidID) {
		t.Errorf("Publish(hostile vma id) = %v, want ErrInvalidID", err)
	}
	if n := streamMsgs(t, oma, bus.StreamProgress); n != 0 {
		t.Errorf("stream holds %d messages after rejected publishes", n)
	}
}

func TestConsume(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	if err := oma.EnsureConsumer(ctx, bus.StreamProgress, bus.OMADurable, subject.AllProgress); err != nil {
		t.Fatal(err)
	}
	js := oma.JetStream()
	// A message that is not an event, one whose payload breaks its schema,
	// and one whose payload belongs to another VMA than its subject says.
	if _, err := js.Publish(ctx, "godwit.progress.vma-1.job-x", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	bad, _ := events.New("/godwit/test", progress("vma-1", "job-x", 1), time.Now())
	bad.Data = json.RawMessage(strings.Replace(string(bad.Data), `"copying"`, `"dreaming"`, 1))
	rawBad, _ := json.Marshal(bad)
	if _, err := js.Publish(ctx, "godwit.progress.vma-1.job-x", rawBad); err != nil {
		t.Fatal(err)
	}
	foreign, _ := events.New("/godwit/test", progress("vma-2", "job-x", 1), time.Now())
	rawForeign, _ := json.Marshal(foreign)
	if _, err := js.Publish(ctx, "godwit.progress.vma-1.job-x", rawForeign); err != nil {
		t.Fatal(err)
	}
	// Then good events: one that fails once (redelivered), one poison, one plain.
	flaky, _ := oma.Publish(ctx, progress("vma-1", "job-flaky", 1))
	poison, _ := oma.Publish(ctx, progress("vma-1", "job-poison", 1))
	plain, _ := oma.Publish(ctx, progress("vma-1", "job-plain", 1))

	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		err := oma.Consume(cctx, bus.StreamProgress, bus.OMADurable, func(_ context.Context, ev events.Event, p events.Payload) error {
			mu.Lock()
			defer mu.Unlock()
			calls[ev.ID]++
			if p.(*events.Progress).JobID == "job-x" {
				t.Errorf("handler got a rejected event %s", ev.Data)
			}
			switch ev.ID {
			case flaky.ID:
				if calls[ev.ID] == 1 {
					return errors.New("database busy")
				}
			case poison.ID:
				return errors.Join(bus.ErrPoison, errors.New("cannot apply"))
			case plain.ID:
				panic("a bug in the handler") // must not stop the consumer
			}
			return nil
		})
		if err != nil {
			t.Errorf("Consume: %v", err)
		}
	}()
	testkit.Eventually(t, "redelivery of the flaky event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls[flaky.ID] == 2 && calls[poison.ID] == 1 && calls[plain.ID] >= 1
	})
	cons, err := js.Consumer(ctx, bus.StreamProgress, bus.OMADurable)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "every message settled but the panicking one", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream >= 5 && info.Delivered.Stream == 6
	})
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if calls[poison.ID] != 1 {
		t.Errorf("poison event handled %d times, want 1 (terminated)", calls[poison.ID])
	}
}

func TestRequestReply(t *testing.T) {
	t.Parallel()
	u := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u.Seed)
	ctx := ctxT(t, 10*time.Second)
	type req struct{ N int }
	type resp struct{ Double int }
	err := oma.Serve(ctx, "godwit.export.request.*.job-1", "oma", bus.ExportReplies, func(_ context.Context, subj string, data []byte) (any, error) {
		var r req
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, err
		}
		if r.N == -2 {
			return nil, fmt.Errorf("wrapped: %w", codedErr{bus.CodeNotFound})
		}
		if r.N < 0 {
			return nil, errors.New("negative: " + subj)
		}
		if r.N == 99 {
			time.Sleep(500 * time.Millisecond)
		}
		return resp{Double: 2 * r.N}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got resp
	if err := vma.Request(ctx, "godwit.export.request.vma-1.job-1", req{N: 21}, &got); err != nil || got.Double != 42 {
		t.Errorf("Request = %+v, %v", got, err)
	}
	var re *bus.RemoteError
	if err := vma.Request(ctx, "godwit.export.request.vma-1.job-1", req{N: -1}, &got); !errors.As(err, &re) ||
		re.Message != "negative: godwit.export.request.vma-1.job-1" || re.Code != "" {
		t.Errorf("Request(failing) = %v, want a RemoteError without a code", err)
	}
	if err := vma.Request(ctx, "godwit.export.request.vma-1.job-1", req{N: -2}, &got); !errors.As(err, &re) ||
		re.Code != bus.CodeNotFound || re.Message != "wrapped: not_found" {
		t.Errorf("Request(coded failure) = %#v, want a RemoteError with code %s", err, bus.CodeNotFound)
	}
	if err := vma.Request(ctx, "godwit.export.request.vma-1.nobody", req{}, &got); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("Request(nobody) = %v, want ErrNoResponders", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := vma.Request(short, "godwit.export.request.vma-1.job-1", req{N: 99}, &got); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request(slow) = %v, want DeadlineExceeded", err)
	}
}

// codedErr is a responder's error carrying a bus code.
type codedErr struct{ code string }

func (e codedErr) Error() string      { return e.code }
func (e codedErr) RemoteCode() string { return e.code }

// permissionErrors collects the permission violations the server reports
// to a connection.
type permissionErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permissionErrors) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			p.mu.Lock()
			p.errs = append(p.errs, err.Error())
			p.mu.Unlock()
		}
	})
}

func (p *permissionErrors) sawFor(s string) func() bool {
	return func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.errs {
			if strings.Contains(e, `"`+s+`"`) {
				return true
			}
		}
		return false
	}
}

func TestVMAIsConfinedToItsOwnSubjects(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	srv, oma, users := startWithVMAs(ctx, t, "vma-a", "vma-b")
	a := users[0]
	for _, id := range []string{"vma-a", "vma-b"} { // again: idempotent
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, stream := range []string{bus.StreamCommands, bus.StreamDiscovery} {
		cons, err := oma.JetStream().Consumer(ctx, stream, bus.VMADurable("vma-a"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := cons.CachedInfo().Config
		if cfg.Durable != "vma-vma-a" || cfg.AckPolicy != jetstream.AckExplicitPolicy || len(cfg.FilterSubjects) == 0 {
			t.Errorf("%s consumer of vma-a = durable %q ack %v filters %v", stream, cfg.Durable, cfg.AckPolicy, cfg.FilterSubjects)
		}
		for _, f := range cfg.FilterSubjects {
			if !strings.Contains(f, ".vma-a") {
				t.Errorf("%s consumer of vma-a filters %q, another VMA's subject", stream, f)
			}
		}
	}
	// A command for each VMA.
	for _, id := range []string{"vma-a", "vma-b"} {
		if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-" + id, VMAID: id}); err != nil {
			t.Fatal(err)
		}
	}
	var perr permissionErrors
	inbox, _ := subject.InboxPrefix("vma-a")
	vmaA := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "vma-a", NKeySeed: a.Seed,
		InboxPrefix: inbox, Confined: true, Options: []nats.Option{perr.option()}})

	// Its own progress is stored.
	if _, err := vmaA.Publish(ctx, progress("vma-a", "job-1", 1)); err != nil {
		t.Fatalf("publish own progress: %v", err)
	}
	// Another VMA's progress is refused by the server, and not stored.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := vmaA.Publish(short, progress("vma-b", "job-1", 1)); err == nil {
		t.Error("publish on another VMA's subject succeeded")
	}
	testkit.Eventually(t, "publish violation", perr.sawFor("godwit.progress.vma-b.job-1"))
	if n := streamMsgs(t, oma, bus.StreamProgress); n != 1 {
		t.Errorf("progress stream holds %d messages, want only vma-a's", n)
	}
	// Another VMA's commands cannot be read: not live, not through its
	// consumer, not from the stream.
	sub, err := vmaA.NATS().SubscribeSync("godwit.replicate.cancel.vma-b")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "subscribe violation", perr.sawFor("godwit.replicate.cancel.vma-b"))
	if _, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Error("read another VMA's cancel live")
	}
	short2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := vmaA.JetStream().Consumer(short2, bus.StreamCommands, bus.VMADurable("vma-b")); err == nil {
		t.Error("opened another VMA's consumer")
	}
	testkit.Eventually(t, "consumer info violation", perr.sawFor("$JS.API.CONSUMER.INFO.COMMANDS.vma-vma-b"))
	short3, cancel3 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel3()
	if _, err := vmaA.JetStream().CreateConsumer(short3, bus.StreamCommands, jetstream.ConsumerConfig{FilterSubject: "godwit.replicate.>"}); err == nil {
		t.Error("created a consumer over every VMA's commands")
	}
	short4, cancel4 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel4()
	if _, err := vmaA.NATS().RequestWithContext(short4, "$JS.API.STREAM.MSG.GET.COMMANDS", []byte(`{"seq":2}`)); err == nil {
		t.Error("got a message from the commands stream directly")
	}

	// Its own commands arrive through its durable consumer.
	got := make(chan string, 4)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = vmaA.Consume(cctx, bus.StreamCommands, bus.VMADurable("vma-a"), func(_ context.Context, _ events.Event, p events.Payload) error {
			got <- p.(*events.ReplicateCancel).JobID
			return nil
		})
	}()
	select {
	case job := <-got:
		if job != "job-vma-a" {
			t.Errorf("vma-a consumed %q", job)
		}
	case <-ctx.Done():
		t.Fatal("vma-a did not receive its own command")
	}
	select {
	case job := <-got:
		t.Errorf("vma-a consumed a second command %q", job)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestObserverIsReadOnly(t *testing.T) {
	t.Parallel()
	obs, vma := bustest.NewUser(t), bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{Observers: []string{obs.PublicKey}, VMAs: map[string]string{"vma-a": vma.PublicKey}})
	oma := bustest.ConnectOMA(t, srv)
	ctx := ctxT(t, 30*time.Second)
	if err := oma.EnsureVMAConsumers(ctx, "vma-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := oma.Publish(ctx, progress("vma-a", "job-1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-1", VMAID: "vma-a"}); err != nil {
		t.Fatal(err)
	}
	var perr permissionErrors
	o := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "observer", NKeySeed: obs.Seed, JSAPIPrefix: bus.ObserverAPIPrefix,
		Options: []nats.Option{perr.option()}})
	js := o.JetStream()

	// Reading works: stream info, get, and a replay consumer.
	s, err := js.Stream(ctx, bus.StreamProgress)
	if err != nil {
		t.Fatalf("observer stream info: %v", err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, "godwit.progress.vma-a.job-1"); err != nil {
		t.Errorf("observer get: %v", err)
	}
	replay, err := js.OrderedConsumer(ctx, bus.StreamProgress, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("observer replay consumer: %v", err)
	}
	if _, err := replay.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Errorf("observer replay: %v", err)
	}

	// The OMA's own buckets (its state's copy for a standby) are not for it.
	if err := oma.EnsureAccessBucket(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := oma.ShareAccess(ctx, bus.Access{Observers: []string{obs.PublicKey}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, "KV_"+bus.AccessBucket); err == nil || !strings.Contains(err.Error(), "not for observers") {
		t.Errorf("observer stream info of the access bucket: %v, want refused", err)
	}
	if c, err := js.OrderedConsumer(ctx, "KV_"+bus.AccessBucket, jetstream.OrderedConsumerConfig{}); err == nil {
		if _, err := c.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
			t.Error("observer read the access bucket")
		}
	}

	// Writing does not.
	if err := o.NATS().Publish("godwit.progress.vma-a.job-1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "observer publish violation", perr.sawFor("godwit.progress.vma-a.job-1"))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := js.DeleteStream(short, bus.StreamProgress); err == nil {
		t.Error("observer deleted a stream")
	}
	// The durable consumers of the VMA and the OMA are out of reach.
	for _, stolen := range []string{"$JS.API.CONSUMER.MSG.NEXT.COMMANDS.vma-vma-a", "$JS.API.CONSUMER.CREATE.COMMANDS.vma-vma-a.godwit.replicate.>", "$JS.API.CONSUMER.DELETE.COMMANDS.vma-vma-a"} {
		if err := o.NATS().Publish(stolen, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "violation on "+stolen, perr.sawFor(stolen))
	}
	if n := streamMsgs(t, oma, bus.StreamProgress); n != 1 {
		t.Errorf("progress stream holds %d messages, want 1", n)
	}
	info, err := oma.JetStream().Consumer(ctx, bus.StreamCommands, bus.VMADurable("vma-a"))
	if err != nil {
		t.Fatalf("vma consumer gone: %v", err)
	}
	if n := info.CachedInfo().NumPending; n != 1 {
		t.Errorf("vma consumer has %d pending, want its command untouched", n)
	}
}

func TestSetAccessAddsAndRemovesVMAs(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t, "", bus.Access{})
	u := bustest.NewUser(t)
	ctx := ctxT(t, 10*time.Second)
	try := func() error {
		c, err := bus.Connect(ctxT(t, time.Second), srv.ClientURL(), bus.ClientConfig{NKeySeed: u.Seed})
		if err == nil {
			c.Close()
		}
		return err
	}
	if try() == nil {
		t.Fatal("unknown VMA connected")
	}
	if err := srv.SetAccess(bus.Access{VMAs: map[string]string{"vma-new": u.PublicKey}}); err != nil {
		t.Fatal(err)
	}
	if err := try(); err != nil {
		t.Fatalf("added VMA cannot connect: %v", err)
	}
	if err := srv.SetAccess(bus.Access{VMAs: map[string]string{"vma.bad": u.PublicKey}}); err == nil {
		t.Error("SetAccess took a hostile VMA id")
	}
	if err := srv.SetAccess(bus.Access{VMAs: map[string]string{"vma-x": "not-a-key"}}); err == nil {
		t.Error("SetAccess took a bad key")
	}
	if got := srv.Access().VMAs["vma-new"]; got != u.PublicKey {
		t.Errorf("failed SetAccess changed the access: %v", srv.Access())
	}
	if err := srv.SetAccess(bus.Access{}); err != nil {
		t.Fatal(err)
	}
	if try() == nil {
		t.Error("removed VMA still connects")
	}
	_ = ctx
}

func TestRestartKeepsMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := ctxT(t, 30*time.Second)
	srv, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	oma, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma"})
	if err != nil {
		t.Fatal(err)
	}
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		ev, err := oma.Publish(ctx, progress("vma-1", "job-1", uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	oma.Close()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv2 := bustest.StartServer(t, dir, bus.Access{})
	oma2 := bustest.ConnectOMA(t, srv2)
	s, err := oma2.JetStream().Stream(ctx, bus.StreamProgress)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("message %d after restart: %v", i+1, err)
		}
		var ev events.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.ID != id {
			t.Errorf("message %d after restart = %s (%v), want event %s", i+1, m.Data, err, id)
		}
	}
}

// TestReconnectThroughDialer proves the dialer hook carries the connection,
// that a client reconnects when the server comes back, and that the state
// callbacks report each step.
func TestReconnectThroughDialer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := bustest.NewUser(t)
	access := bus.Access{VMAs: map[string]string{"vma-1": u.PublicKey}}
	ctx := ctxT(t, 60*time.Second)
	srv, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: dir, Port: -1, Access: access})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.ClientURL(), "nats://")
	var dials atomic.Int32
	var mu sync.Mutex
	var states []bus.State
	inbox, _ := subject.InboxPrefix("vma-1")
	c := bustest.Connect(t, "nats://tunnel.invalid:4222", bus.ClientConfig{
		Name: "vma-1", NKeySeed: u.Seed, InboxPrefix: inbox, Confined: true,
		// The URL's host does not resolve: only the hook can reach the server.
		Dial: func(network, _ string) (net.Conn, error) {
			dials.Add(1)
			return net.Dial(network, addr)
		},
		ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond,
		OnState: func(s bus.State, _ error) {
			mu.Lock()
			states = append(states, s)
			mu.Unlock()
		},
	})
	seen := func(want ...bus.State) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(states) == len(want) && strings.Join(strs(states), ",") == strings.Join(strs(want), ",")
		}
	}
	testkit.Eventually(t, "connected", seen(bus.Connected))
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "disconnected", seen(bus.Connected, bus.Disconnected))
	before := dials.Load()
	testkit.Eventually(t, "reconnect attempts while the server is down", func() bool { return dials.Load() >= before+2 })
	srv2, err := bus.StartServer(ctx, bus.ServerConfig{StoreDir: dir, Port: portOf(t, addr), Access: access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Shutdown(context.Background()) })
	oma := bustest.ConnectOMA(t, srv2)
	if err := oma.EnsureStreams(ctx, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "reconnected", seen(bus.Connected, bus.Disconnected, bus.Reconnected))
	if _, err := c.Publish(ctx, progress("vma-1", "job-1", 1)); err != nil {
		t.Errorf("publish after reconnect: %v", err)
	}
	c.Close()
	testkit.Eventually(t, "closed", seen(bus.Connected, bus.Disconnected, bus.Reconnected, bus.Closed))
}

func strs(states []bus.State) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = s.String()
	}
	return out
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestConnectGivesUpWithTheLastError(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	// Long enough for a connection attempt on a busy machine: it is refused
	// at once, and Connect keeps trying until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = bus.Connect(ctx, "nats://"+addr, bus.ClientConfig{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Connect(nothing) = %v, want a deadline error naming the refusal", err)
	}
}
