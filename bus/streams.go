package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	StreamPlans     = "PLANS"     // migration plans: created, changed, VM states, syncs
)

// OMADurable is the name of the OMA's durable consumer on every stream it reads.
const OMADurable = "oma"

// VMADurable returns the name of a VMA's durable consumer on the commands
// and discovery streams. The id must pass subject.ValidID.
func VMADurable(vmaID string) string { return "vma-" + vmaID }

// StreamLimits bound what the streams keep (limits retention). The zero
// value keeps 30 days, at most 1 GiB per stream, the last 10,000 messages
// per subject (1,000 in the queue streams), and drops a publish whose
// Nats-Msg-Id was seen in the last 2 minutes.
//
// No VMA can make a queue stream (COMMANDS, DISCOVERY) drop or refuse
// another VMA's messages. Each subject there belongs to one VMA, takes
// messages of at most MaxQueuedMsgSize, and keeps its last
// QueueMsgsPerSubject: a VMA that floods its own subjects only rolls its
// own history. So a VMA's share of a queue stream is bounded (QueueShare),
// and EnsureStreams and EnsureVMAConsumers keep each queue stream's byte
// limit at least the sum of the shares of the VMAs it has durables for,
// and the stream can never fill. Were it full all the same (an operator
// lowered its limit), it would refuse every publish (DiscardNew) and
// lose nothing queued. The other streams keep history for replay: they
// drop their oldest messages when full; the OMA, whose durables read
// them as they come, has applied those by then. The OMA alerts when a
// stream passes AlertAt of a limit (see Conn.WatchStreams).
type StreamLimits struct {
	MaxAge            time.Duration
	MaxBytes          int64
	MaxMsgsPerSubject int64
	// QueueMsgsPerSubject is the per-subject limit of the queue streams.
	QueueMsgsPerSubject int64
	Duplicates          time.Duration
	// Replicas is the replica count on a NATS cluster; 0 means 1.
	Replicas int
}

// MaxQueuedMsgSize is the largest message the queue streams (COMMANDS,
// DISCOVERY) take: a command or a discover request is a few KiB (a job
// replicates one VM, whose path is at most 4 KiB).
const MaxQueuedMsgSize = 16 << 10

// queuedMsgOverhead is what the store adds to each message it keeps
// (subject, headers, sequence and checksum), counted in a VMA's share.
const queuedMsgOverhead = 1 << 10

// QueueShare is the most that one VMA's subjects can hold in the queue
// stream cfg: each keeps at most its last MaxMsgsPerSubject messages of at
// most MaxMsgSize bytes. It is 0 for the other streams.
func QueueShare(cfg jetstream.StreamConfig) int64 {
	n := int64(len(vmaQueueSubjects(cfg.Name, "x")))
	return n * cfg.MaxMsgsPerSubject * (int64(cfg.MaxMsgSize) + queuedMsgOverhead)
}

// vmaQueueSubjects returns the subjects of VMA id in the queue stream
// named stream, or none when it is no queue stream.
func vmaQueueSubjects(stream, id string) []string {
	switch stream {
	case StreamCommands:
		s, _ := subject.VMACommands(id)
		return s
	case StreamDiscovery:
		s, _ := subject.DiscoverRequest(id)
		return []string{s}
	}
	return nil
}

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
	if l.QueueMsgsPerSubject == 0 {
		l.QueueMsgsPerSubject = 1_000
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
		cfg.Discard, cfg.MaxMsgSize, cfg.MaxMsgsPerSubject = jetstream.DiscardNew, MaxQueuedMsgSize, l.QueueMsgsPerSubject
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
		mk(StreamPlans, "godwit migration plans", subject.AllPlans),
	}
}

// EnsureStreams creates the godwit streams, or updates them to l. Calling
// it again with the same limits changes nothing.
//
// DISCOVERY held discover results too before INVENTORY did: when the
// OMA's durable that read them there is found, it is deleted and the old
// results purged from DISCOVERY (their VMs are in the OMA's inventory).
//
// A queue stream's byte limit is raised, when it must be, to the sum of
// the shares (QueueShare) of the VMAs it has durables for.
func (c *Conn) EnsureStreams(ctx context.Context, l StreamLimits) error {
	for _, cfg := range StreamConfigs(l) {
		if QueueShare(cfg) > 0 {
			n, err := c.vmaDurables(ctx, cfg.Name)
			if err != nil {
				return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
			}
			cfg.MaxBytes = max(cfg.MaxBytes, int64(n)*QueueShare(cfg))
		}
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
// and its discover requests; and raises the byte limit of these queue
// streams, when it must, so that it holds the VMA's share too.
func (c *Conn) EnsureVMAConsumers(ctx context.Context, vmaID string) error {
	if err := subject.ValidID(vmaID); err != nil {
		return fmt.Errorf("ensure consumers of vma: %w", err)
	}
	for _, stream := range []string{StreamCommands, StreamDiscovery} {
		if err := c.EnsureConsumer(ctx, stream, VMADurable(vmaID), vmaQueueSubjects(stream, vmaID)...); err != nil {
			return err
		}
		if err := c.makeRoom(ctx, stream); err != nil {
			return err
		}
	}
	return nil
}

// makeRoom raises the byte limit of the queue stream named stream to the
// sum of the shares of the VMAs it has durables for, if it is lower.
func (c *Conn) makeRoom(ctx context.Context, stream string) error {
	var s jetstream.Stream
	if err := retryAPI(ctx, func() (err error) { s, err = c.js.Stream(ctx, stream); return err }); err != nil {
		return fmt.Errorf("make room in %s: %w", stream, err)
	}
	n, err := c.countVMADurables(ctx, s)
	if err != nil {
		return fmt.Errorf("make room in %s: %w", stream, err)
	}
	cfg := s.CachedInfo().Config
	need := int64(n) * QueueShare(cfg)
	if cfg.MaxBytes < 0 || cfg.MaxBytes >= need {
		return nil
	}
	cfg.MaxBytes = need
	if err := retryAPI(ctx, func() error { _, err := c.js.UpdateStream(ctx, cfg); return err }); err != nil {
		return fmt.Errorf("make room in %s for %d VMAs: %w", stream, n, err)
	}
	c.log.Info("queue stream limit raised to hold every VMA's share", "stream", stream, "vmas", n, "max_bytes", need)
	return nil
}

// vmaDurables counts the VMAs' durables (VMADurable) on the stream named
// stream; 0 when the stream does not exist yet.
func (c *Conn) vmaDurables(ctx context.Context, stream string) (int, error) {
	var s jetstream.Stream
	err := retryAPI(ctx, func() (err error) { s, err = c.js.Stream(ctx, stream); return err })
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("list the consumers of %s: %w", stream, err)
	}
	return c.countVMADurables(ctx, s)
}

// countVMADurables counts the VMAs' durables (VMADurable) on s.
func (c *Conn) countVMADurables(ctx context.Context, s jetstream.Stream) (int, error) {
	var n int
	err := retryAPI(ctx, func() error {
		n = 0
		names := s.ConsumerNames(ctx)
		for name := range names.Name() {
			if strings.HasPrefix(name, VMADurable("")) {
				n++
			}
		}
		return names.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("list the consumers of %s: %w", s.CachedInfo().Config.Name, err)
	}
	return n, nil
}
