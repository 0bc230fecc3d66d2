package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// ObserverAPIPrefix is the JetStream API prefix of observers: the nats CLI
// reaches JetStream with --js-api-prefix '$GODWIT.OBSERVER.API'. Observers
// may not use $JS.API themselves; the server's gate forwards to it the
// requests that only read.
const ObserverAPIPrefix = "$GODWIT.OBSERVER.API"

// Limits on what an observer's replay consumer may be.
const (
	// MaxObserverInactive is the longest inactive threshold an observer's
	// consumer may have: it is gone this long after its last pull.
	// nats.go's ordered consumers ask for 5 minutes.
	MaxObserverInactive = 5 * time.Minute
	// MaxObserverConsumers is how many ephemeral consumers a stream may
	// have before the gate refuses an observer another one.
	MaxObserverConsumers = 16
)

// observerInbox is where the answers to an observer's requests go: its
// inbox, never a subject a stream stores.
const observerInbox = "_INBOX."

// errNotForObservers is wrapped by every refusal of the gate.
var errNotForObservers = errors.New("not for observers")

// gate checks the JetStream API requests of observers and forwards to
// $JS.API only those that read: listing and inspecting streams and
// consumers, getting messages, and creating and pulling from ephemeral pull
// consumers. Subject permissions alone cannot do this: whether a consumer
// is durable, and where a push consumer delivers, is in the request body.
type gate struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	sub *nats.Subscription
	log *slog.Logger
}

// startGate connects to ns in-process as the OMA user kp and serves
// ObserverAPIPrefix.>.
func startGate(ns *server.Server, kp nkeys.KeyPair, log *slog.Logger) (*gate, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("start observer gate: %w", err)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("godwit-observer-gate"),
		nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix("_INBOX_OMA"))
	if err != nil {
		return nil, fmt.Errorf("start observer gate: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("start observer gate: %w", err)
	}
	g := &gate{nc: nc, js: js, log: log.With("observer_gate", ObserverAPIPrefix)}
	if g.sub, err = nc.Subscribe(ObserverAPIPrefix+".>", g.handle); err != nil {
		nc.Close()
		return nil, fmt.Errorf("start observer gate: %w", err)
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("start observer gate: %w", err)
	}
	return g, nil
}

// close stops the gate.
func (g *gate) close() { g.nc.Close() }

// handle forwards one observer request, or answers it with an error.
func (g *gate) handle(msg *nats.Msg) {
	api := strings.TrimPrefix(msg.Subject, ObserverAPIPrefix+".")
	if !strings.HasPrefix(msg.Reply, observerInbox) || strings.ContainsAny(msg.Reply, "*>") {
		g.log.Warn("observer request dropped: the answer would not go to its inbox", "api", api, "reply", msg.Reply)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultRequestTimeout)
	defer cancel()
	data, err := g.check(ctx, api, msg.Data)
	if err != nil && strings.HasPrefix(api, "CONSUMER.MSG.NEXT.") {
		// A pull's answers are messages: refuse with a status message, which
		// clients take as the end of the pull.
		g.log.Warn("observer request refused", "api", api, "err", err)
		refusal := nats.NewMsg(msg.Reply)
		refusal.Header.Set("Status", "409")
		refusal.Header.Set("Description", "godwit: "+err.Error())
		if err := msg.RespondMsg(refusal); err != nil {
			g.log.Warn("answer observer", "api", api, "err", err)
		}
		return
	}
	if err != nil {
		g.log.Warn("observer request refused", "api", api, "err", err)
		body, _ := json.Marshal(map[string]any{"error": map[string]any{"code": 403, "description": "godwit: " + err.Error()}})
		if err := msg.Respond(body); err != nil {
			g.log.Warn("answer observer", "api", api, "err", err)
		}
		return
	}
	fwd := &nats.Msg{Subject: "$JS.API." + api, Reply: msg.Reply, Data: data, Header: msg.Header}
	if err := g.nc.PublishMsg(fwd); err != nil {
		g.log.Warn("forward observer request", "api", api, "err", err)
	}
}

// check returns the request body to forward for the JetStream API call
// api (the subject after $JS.API.), or why an observer may not make it.
func (g *gate) check(ctx context.Context, api string, data []byte) ([]byte, error) {
	toks := strings.Split(api, ".")
	for i, t := range toks {
		// Names come first; only a consumer create's filter (the tokens
		// after CONSUMER.CREATE.<stream>.<name>) may hold wildcards.
		named := i < 4 || toks[0] != "CONSUMER" || toks[1] != "CREATE"
		if t == "" || (named && (t == "*" || t == ">")) {
			return nil, fmt.Errorf("%w: malformed API subject %q", errNotForObservers, api)
		}
	}
	is := func(n int, prefix ...string) bool {
		return len(toks) == n && len(toks) >= len(prefix) && strings.Join(toks[:len(prefix)], ".") == strings.Join(prefix, ".")
	}
	if stream := streamOf(toks); strings.HasPrefix(stream, privateStreams) {
		return nil, fmt.Errorf("%w: %s holds the OMA's own state", errNotForObservers, stream)
	}
	switch {
	case is(1, "INFO"), is(2, "STREAM", "NAMES"), is(2, "STREAM", "LIST"), is(3, "STREAM", "INFO"),
		is(4, "STREAM", "MSG", "GET"), is(3, "DIRECT", "GET"), len(toks) > 3 && toks[0] == "DIRECT" && toks[1] == "GET",
		is(3, "CONSUMER", "NAMES"), is(3, "CONSUMER", "LIST"), is(4, "CONSUMER", "INFO"):
		return data, nil
	case len(toks) >= 3 && toks[0] == "CONSUMER" && toks[1] == "CREATE":
		if len(toks) >= 4 && reservedConsumer(toks[3]) {
			return nil, fmt.Errorf("%w: consumer name %q is kept for the OMA and the VMAs", errNotForObservers, toks[3])
		}
		return g.checkCreate(ctx, toks[2], data)
	case is(5, "CONSUMER", "MSG", "NEXT"):
		return data, g.checkPull(ctx, toks[3], toks[4])
	}
	return nil, fmt.Errorf("%w: %s changes JetStream or is not a read", errNotForObservers, api)
}

// privateStreams prefixes the streams of the OMA's key-value buckets (its
// lease, the access it shares, the copy of its state for a standby): none
// is an observer's to read.
const privateStreams = "KV_godwit-"

// streamOf returns the stream an API call (its subject's tokens after
// $JS.API.) is about, "" when none.
func streamOf(toks []string) string {
	switch {
	case len(toks) >= 3 && (toks[0] == "STREAM" && toks[1] != "MSG" || toks[0] == "DIRECT" || toks[0] == "CONSUMER" && toks[1] != "MSG"):
		return toks[2]
	case len(toks) >= 4 && toks[1] == "MSG":
		return toks[3]
	}
	return ""
}

// checkCreate lets an observer create an ephemeral pull consumer with an
// inactive threshold of at most MaxObserverInactive (0: the server's 5s),
// and nothing else. The body forwarded is the one
// checked, re-encoded.
func (g *gate) checkCreate(ctx context.Context, stream string, data []byte) ([]byte, error) {
	var req server.CreateConsumerRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("%w: bad consumer create request: %v", errNotForObservers, err)
	}
	cfg := &req.Config
	switch {
	case cfg.Durable != "":
		return nil, fmt.Errorf("%w: durable consumer %q", errNotForObservers, cfg.Durable)
	case reservedConsumer(cfg.Name):
		return nil, fmt.Errorf("%w: consumer name %q is kept for the OMA and the VMAs", errNotForObservers, cfg.Name)
	case cfg.DeliverSubject != "":
		return nil, fmt.Errorf("%w: push consumer delivering to %q (use a pull or ordered consumer)", errNotForObservers, cfg.DeliverSubject)
	case cfg.Direct || cfg.Sourcing:
		return nil, fmt.Errorf("%w: direct or sourcing consumer", errNotForObservers)
	case cfg.InactiveThreshold > MaxObserverInactive:
		return nil, fmt.Errorf("%w: inactive threshold %s over %s", errNotForObservers, cfg.InactiveThreshold, MaxObserverInactive)
	}
	req.Action = server.ActionCreate // never update another consumer
	s, err := g.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	n := 0
	for info := range s.ListConsumers(ctx).Info() {
		if info.Config.Durable == "" {
			n++
		}
	}
	if n >= MaxObserverConsumers {
		return nil, fmt.Errorf("%w: %s already has %d ephemeral consumers", errNotForObservers, stream, n)
	}
	out, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode consumer create request: %w", err)
	}
	return out, nil
}

// reservedConsumer reports whether name is one the OMA gives its own
// durables or a VMA's (OMADurable, VMADurable): an observer's ephemeral
// consumer may not take it, or a VMA's registration would fail on it.
func reservedConsumer(name string) bool {
	return name == OMADurable || strings.HasPrefix(name, VMADurable(""))
}

// checkPull lets an observer pull only from ephemeral consumers, so it
// cannot take messages from the OMA's or a VMA's durables.
func (g *gate) checkPull(ctx context.Context, stream, consumer string) error {
	c, err := g.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
	}
	if d := c.CachedInfo().Config.Durable; d != "" {
		return fmt.Errorf("%w: pulling from durable %s", errNotForObservers, d)
	}
	return nil
}
