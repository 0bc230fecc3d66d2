package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/bus/bustest"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/testkit"
)

// jsState is every stream's message count and every consumer's name.
func jsState(t *testing.T, c *bus.Conn) map[string]string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	out := map[string]string{}
	for _, cfg := range bus.StreamConfigs(bus.StreamLimits{}) {
		s, err := c.JetStream().Stream(ctx, cfg.Name)
		if err != nil {
			out[cfg.Name] = "gone: " + err.Error()
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := s.ConsumerNames(ctx)
		var cons []string
		for n := range names.Name() {
			cons = append(cons, n)
		}
		out[cfg.Name] = fmt.Sprintf("%d msgs, consumers %v", info.State.Msgs, cons)
	}
	return out
}

// TestServeRepliesOnlyIntoTheRequestersInbox has a VMA send export
// requests whose reply subjects would delete or purge streams, delete
// another VMA's durable, or answer into another VMA's inbox. The requests
// cross from the VMA's account as a service import, so the server gives
// them a reply of its own and routes the answer back into the VMA's
// account: nothing changes in JetStream and no other VMA hears anything.
// The same requests made inside the OMA's account (by an admin) are
// dropped with a log line each. A request from the VMA's own inbox still
// gets its answer.
func TestServeRepliesOnlyIntoTheRequestersInbox(t *testing.T) {
	t.Parallel()
	u, other, x := bustest.NewUser(t), bustest.NewUser(t), bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u.PublicKey, "vma-other": other.PublicKey, "vma-1x": x.PublicKey}})
	var logs testkit.Buffer
	ctx := ctxT(t, 60*time.Second)
	oma, err := srv.Connect(ctx, bus.ClientConfig{Name: "oma", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oma.Close)
	for _, id := range []string{"vma-1", "vma-other", "vma-1x"} {
		if err := oma.EnsureVMAConsumers(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := oma.Publish(ctx, progress("vma-1", "job-1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := oma.Publish(ctx, &events.ReplicateCancel{JobID: "job-9", VMAID: "vma-other"}); err != nil {
		t.Fatal(err)
	}
	answered := make(chan string, 64)
	err = oma.Serve(ctx, subject.AllExport, "oma", bus.ExportReplies, func(_ context.Context, subj string, _ []byte) (any, error) {
		answered <- subj
		if subj != "godwit.export.request.vma-1.job-2" {
			// Like an unknown job: the error reply has an empty body,
			// which the JetStream API takes as a request.
			return nil, errors.New("no such job")
		}
		return map[string]string{"ok": subj}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := jsState(t, oma)

	// Another VMA's inbox, and one that only starts like vma-1's.
	otherInbox, _ := subject.InboxPrefix("vma-other")
	otherConn := bustest.ConnectVMA(t, srv.ClientURL(), "vma-other", other.Seed)
	spied, err := otherConn.NATS().SubscribeSync(otherInbox + ".>")
	if err != nil {
		t.Fatal(err)
	}
	xInbox, _ := subject.InboxPrefix("vma-1x")
	xConn := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1x", x.Seed)
	spiedX, err := xConn.NATS().SubscribeSync(xInbox + ".>")
	if err != nil {
		t.Fatal(err)
	}

	replies := []string{
		"$JS.API.STREAM.DELETE.JOBS",
		"$JS.API.STREAM.DELETE.PROGRESS",
		"$JS.API.STREAM.PURGE.COMMANDS",
		"$JS.API.STREAM.PURGE.PROGRESS",
		"$JS.API.CONSUMER.DELETE.COMMANDS.vma-vma-other",
		"$JS.API.CONSUMER.DELETE.DISCOVERY.vma-vma-other",
		"$JS.API.CONSUMER.DELETE.PROGRESS.oma",
		otherInbox + ".stolen",
		xInbox + ".stolen",
		"_INBOX_VMA.vma-1",
		"_INBOX_OMA.x",
	}
	seed := u.SeedFile(t)
	for _, reply := range replies { // with the real nats CLI
		out, err := natsCLI(t, srv.ClientURL(), seed, "pub", "godwit.export.request.vma-1.job-1", "{}", "--reply", reply)
		if err != nil {
			t.Fatalf("nats pub --reply %s: %v\n%s", reply, err, out)
		}
	}
	vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u.Seed)
	for _, reply := range replies { // and with a VMA's own connection
		if err := vma.NATS().PublishRequest("godwit.export.request.vma-1.job-1", reply, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	admin := bustest.NewUser(t)
	if err := srv.SetAccess(bus.Access{VMAs: srv.Access().VMAs, Admins: []string{admin.PublicKey}}); err != nil {
		t.Fatal(err)
	}
	adminConn := bustest.Connect(t, srv.ClientURL(), bus.ClientConfig{Name: "admin", NKeySeed: admin.Seed})
	for _, reply := range replies { // inside the OMA's account
		if err := adminConn.NATS().PublishRequest("godwit.export.request.vma-1.job-1", reply, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := adminConn.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the admin's requests dropped", func() bool {
		return strings.Count(logs.String(), "request dropped") >= len(replies)
	})
	// The legitimate request is answered; the server delivers the requests
	// in order, so every hostile one was handled before it.
	var got map[string]string
	if err := vma.Request(ctx, "godwit.export.request.vma-1.job-2", struct{}{}, &got); err != nil || got["ok"] != "godwit.export.request.vma-1.job-2" {
		t.Fatalf("legitimate request = %v, %v", got, err)
	}
	for subj := range answered {
		if subj == "godwit.export.request.vma-1.job-2" {
			break
		}
	}
	if after := jsState(t, oma); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("JetStream changed:\nbefore %v\nafter  %v", before, after)
	}
	if m, err := spied.NextMsg(50 * time.Millisecond); err == nil {
		t.Errorf("another VMA's inbox got an answer on %s: %s", m.Subject, m.Data)
	}
	if m, err := spiedX.NextMsg(50 * time.Millisecond); err == nil {
		t.Errorf("vma-1x's inbox got an answer to vma-1 on %s: %s", m.Subject, m.Data)
	}
	if n := strings.Count(logs.String(), "request dropped"); n != len(replies) {
		t.Errorf("logged %d dropped requests, want %d (the admin's):\n%s", n, len(replies), logs.String())
	}
}

// TestPulledMessagesNeverAnswerARequest runs a confined VMA that consumes
// its commands while it asks the OMA one request at a time and publishes
// events. A pulled message arrives with its stream subject, not its inbox:
// were the pull's inbox under the connection's request inbox, nats.go would
// take it for the answer to the one request in flight (a reply "the server
// rewrote"), so an export request got a command for its allocation and a
// publish a command for its ack.
func TestPulledMessagesNeverAnswerARequest(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 2*time.Minute)
	srv, oma, users := startWithVMAs(ctx, t, "vma-1")
	vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", users[0].Seed)
	err := oma.Serve(ctx, "godwit.export.request.*.*", "oma", bus.ExportReplies, func(_ context.Context, subj string, _ []byte) (any, error) {
		time.Sleep(5 * time.Millisecond) // the request stays in flight while commands arrive
		return map[string]string{"subject": subj}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const commands = 200
	consumed := make(chan struct{}, commands)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = vma.Consume(cctx, bus.StreamCommands, bus.VMADurable("vma-1"), func(context.Context, events.Event, events.Payload) error {
			consumed <- struct{}{}
			return nil
		})
	}()
	go func() {
		for i := range commands {
			if _, err := oma.Publish(cctx, &events.ReplicateCancel{JobID: fmt.Sprintf("job-%d", i), VMAID: "vma-1"}); err != nil {
				t.Errorf("publish command %d: %v", i, err)
				return
			}
		}
	}()
	for i, n := 0, 0; n < commands; i++ {
		select {
		case <-consumed:
			n++
			continue
		case <-ctx.Done():
			t.Fatalf("%d of %d commands consumed", n, commands)
		default:
		}
		subj := fmt.Sprintf("godwit.export.request.vma-1.job-%d", i)
		var got map[string]string
		if err := vma.Request(ctx, subj, struct{}{}, &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got["subject"] != subj {
			t.Fatalf("request %s answered with %v", subj, got)
		}
		// A raw publish, without the retry that hides an answer that is no PubAck.
		ack, err := vma.JetStream().Publish(ctx, "godwit.progress.vma-1.job-1", []byte("{}"))
		if err != nil || ack.Stream != bus.StreamProgress {
			t.Fatalf("publish %d: ack %+v, %v", i, ack, err)
		}
	}
}

// TestServeWorkers: a VMA's verify request reaches the OMA through its
// account's import, and with Workers(2) a request that takes long does not
// hold back the next one (another VMA's, in production); without the
// option, the second waits for the first.
func TestServeWorkers(t *testing.T) {
	t.Parallel()
	u := bustest.NewUser(t)
	srv := bustest.StartServer(t, "", bus.Access{VMAs: map[string]string{"vma-1": u.PublicKey}})
	ctx := ctxT(t, 60*time.Second)
	for _, workers := range []int{2, 1} {
		oma, err := srv.Connect(ctx, bus.ClientConfig{Name: fmt.Sprintf("oma-%d", workers)})
		if err != nil {
			t.Fatal(err)
		}
		release, started := make(chan struct{}), make(chan struct{}, 1)
		sctx, stop := context.WithCancel(ctx)
		err = oma.Serve(sctx, subject.AllVerify, "oma", bus.VerifyReplies, func(ctx context.Context, subj string, _ []byte) (any, error) {
			if strings.HasSuffix(subj, ".slow") {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return map[string]string{"subject": subj}, nil
		}, bus.Workers(workers))
		if err != nil {
			t.Fatal(err)
		}
		vma := bustest.ConnectVMA(t, srv.ClientURL(), "vma-1", u.Seed)
		slow, _ := subject.VerifyRequest("vma-1", "slow")
		fast, _ := subject.VerifyRequest("vma-1", "fast")
		slowDone := make(chan error, 1)
		go func() {
			var resp map[string]string
			slowDone <- vma.RequestServed(ctx, slow, struct{}{}, &resp)
		}()
		<-started
		var resp map[string]string
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = vma.RequestServed(rctx, fast, struct{}{}, &resp)
		cancel()
		switch {
		case workers > 1 && (err != nil || resp["subject"] != fast):
			t.Errorf("Workers(%d): the fast request while the slow one is held = %v, %v; want answered", workers, resp, err)
		case workers == 1 && err == nil:
			t.Errorf("one at a time: the fast request was answered while the slow one was held")
		}
		close(release)
		if err := <-slowDone; err != nil {
			t.Errorf("Workers(%d): the slow request = %v", workers, err)
		}
		stop()
		oma.Close()
	}
}
