package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/events/subject"
)

// Stream names.
const (
	StreamDiscovery = "DISCOVERY" // discover requests, queued for each VMA
	StreamInventory = "INVENTORY" // discover results: the VMs each VMA found
	StreamCommands  = "COMMANDS"  // replicate commands and cancels, queued for each VMA
	StreamProgress  = "PROGRESS"  // progress and replication status
	StreamJobs      = "JOBS"      // job lifecycle
	StreamPresence  = "PRESENCE"  // VMA heartbeats, the last one per VMA
	StreamTunnel    = "TUNNEL"    // outages of the VMAs' SSH connections
	StreamAlerts    = "ALERTS"    // the OMA's alerts, such as a stream near its limit
)

// OMADurable is the name of the OMA's durable consumer on every stream it reads.
const OMADurable = "oma"

// VMADurable returns the name of a VMA's durable consumer on the commands
// and discovery streams. The id must pass subject.ValidID.
func VMADurable(vmaID string) string { return "vma-" + vmaID }

// StreamLimits bound what the streams keep (limits retention). The zero
// value keeps 30 days, at most 1 GiB per stream, the last 10,000 messages
// per subject, and drops a publish whose Nats-Msg-Id was seen in the last
// 2 minutes.
//
// No VMA can make a stream drop another VMA's messages. The streams that
// queue messages for the VMAs (COMMANDS, DISCOVERY) refuse a publish when
// full (DiscardNew) instead of dropping their oldest messages, and take
// messages of at most MaxQueuedMsgSize; each subject there belongs to one
// VMA, and a subject over MaxMsgsPerSubject drops its own oldest message.
// So a VMA that floods its own subjects only rolls its own history, and
// while the stream is full every publish is refused, the flood included,
// and nothing queued is lost. The other streams keep history for replay:
// they drop their oldest messages when full. The OMA alerts when a stream
// passes AlertAt of a limit (see Conn.WatchStreams).
type StreamLimits struct {
	MaxAge            time.Duration
	MaxBytes          int64
	MaxMsgsPerSubject int64
	Duplicates        time.Duration
	// Replicas is the replica count on a NATS cluster; 0 means 1.
	Replicas int
}

// MaxQueuedMsgSize is the largest message the queue streams (COMMANDS,
// DISCOVERY) take: a command or a discover request is a few KiB.
const MaxQueuedMsgSize = 64 << 10

func (l StreamLimits) withDefaults() StreamLimits {
	if l.MaxAge == 0 {
		l.MaxAge = 30 * 24 * time.Hour
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = 1 << 30
	}
	if l.MaxMsgsPerSubject == 0 {
		l.MaxMsgsPerSubject = 10_000
	}
	if l.Duplicates == 0 {
		l.Duplicates = 2 * time.Minute
	}
	if l.Replicas == 0 {
		l.Replicas = 1
	}
	return l
}

// StreamConfigs returns the configuration of every godwit stream.
func StreamConfigs(l StreamLimits) []jetstream.StreamConfig {
	l = l.withDefaults()
	mk := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:              name,
			Description:       desc,
			Subjects:          subjects,
			Retention:         jetstream.LimitsPolicy,
			Discard:           jetstream.DiscardOld,
			Storage:           jetstream.FileStorage,
			MaxAge:            l.MaxAge,
			MaxBytes:          l.MaxBytes,
			MaxMsgsPerSubject: l.MaxMsgsPerSubject,
			Duplicates:        l.Duplicates,
			Replicas:          l.Replicas,
		}
	}
	queue := func(cfg jetstream.StreamConfig) jetstream.StreamConfig {
		cfg.Discard, cfg.MaxMsgSize = jetstream.DiscardNew, MaxQueuedMsgSize
		return cfg
	}
	presence := mk(StreamPresence, "godwit VMA heartbeats", subject.AllVMA)
	presence.MaxMsgsPerSubject = 1
	return []jetstream.StreamConfig{
		queue(mk(StreamDiscovery, "godwit discover requests", subject.AllDiscoverRequest)),
		mk(StreamInventory, "godwit discover results", subject.AllDiscoverResult),
		queue(mk(StreamCommands, "godwit replicate commands and cancels", subject.AllReplicate)),
		mk(StreamProgress, "godwit progress and replication status", subject.AllProgress, subject.AllStatus),
		mk(StreamJobs, "godwit job lifecycle", subject.AllJobs),
		presence,
		mk(StreamTunnel, "godwit VMA SSH connection outages", subject.AllTunnel),
		mk(StreamAlerts, "godwit OMA alerts", subject.AllAlert),
	}
}

// EnsureStreams creates the godwit streams, or updates them to l. Calling
// it again with the same limits changes nothing.
//
// DISCOVERY held discover results too before INVENTORY did: when the
// OMA's durable that read them there is found, it is deleted and the old
// results purged from DISCOVERY (their VMs are in the OMA's inventory).
func (c *Conn) EnsureStreams(ctx context.Context, l StreamLimits) error {
	for _, cfg := range StreamConfigs(l) {
		if err := retryAPI(ctx, func() error { _, err := c.js.CreateOrUpdateStream(ctx, cfg); return err }); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	err := retryAPI(ctx, func() error { return c.js.DeleteConsumer(ctx, StreamDiscovery, OMADurable) })
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("ensure streams: delete the OMA's durable on %s: %w", StreamDiscovery, err)
	}
	s, err := c.js.Stream(ctx, StreamDiscovery)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(subject.AllDiscoverResult))
	}
	if err != nil {
		return fmt.Errorf("ensure streams: purge the old discover results from %s: %w", StreamDiscovery, err)
	}
	c.log.Info("discover results moved to their own stream; the old ones were purged from "+StreamDiscovery, "stream", StreamInventory)
	return nil
}

// EnsureConsumer creates or updates a durable pull consumer with explicit
// acks, delivering every message of stream that matches filters.
func (c *Conn) EnsureConsumer(ctx context.Context, stream, durable string, filters ...string) error {
	cfg := jetstream.ConsumerConfig{
		Durable:        durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        30 * time.Second,
		FilterSubjects: filters,
	}
	if err := retryAPI(ctx, func() error { _, err := c.js.CreateOrUpdateConsumer(ctx, stream, cfg); return err }); err != nil {
		return fmt.Errorf("ensure consumer %s on %s: %w", durable, stream, err)
	}
	return nil
}

// retryAPI calls fn, a JetStream API call, again while the server has
// nobody answering the API: while it reloads its accounts (a VMA
// registered, say), the OMA's account is briefly without its JetStream
// API. It gives up when ctx ends.
func retryAPI(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// EnsureVMAConsumers creates the durable consumers a VMA reads: its commands
// and cancels, and its discover requests. A command published while the VMA
// is away waits there until it comes back.
func (c *Conn) EnsureVMAConsumers(ctx context.Context, vmaID string) error {
	cmds, err := subject.VMACommands(vmaID)
	if err != nil {
		return fmt.Errorf("ensure consumers of vma: %w", err)
	}
	disc, err := subject.DiscoverRequest(vmaID)
	if err != nil {
		return fmt.Errorf("ensure consumers of vma: %w", err)
	}
	if err := c.EnsureConsumer(ctx, StreamCommands, VMADurable(vmaID), cmds...); err != nil {
		return err
	}
	return c.EnsureConsumer(ctx, StreamDiscovery, VMADurable(vmaID), disc)
}
