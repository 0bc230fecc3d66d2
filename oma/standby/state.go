package standby

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/godwit/godwit/oma/store"
)

// StateBucket is the key-value bucket the active OMA's state is copied
// into: one key per item of a replicated bucket of its store,
// <bucket>.<key>, each base64url.
const StateBucket = "godwit-state"

// stateStream is the stream behind StateBucket, and statePrefix the
// subjects' prefix of its keys.
const (
	stateStream = "KV_" + StateBucket
	statePrefix = "$KV." + StateBucket + "."
)

// chunkSize is the largest value put in one message; a larger one (an
// inventory of thousands of VMs) goes in chunks, <item>.c.<i>, then the
// item itself with the chunks' count and digest in its headers.
const chunkSize = 256 << 10

// Headers of an item whose value is in chunks.
const (
	hdrChunks = "Godwit-Chunks"
	hdrSum    = "Godwit-Sum"
)

var b64 = base64.RawURLEncoding

// itemKey is the key of a store item in StateBucket.
func itemKey(bucket string, key []byte) string {
	return b64.EncodeToString([]byte(bucket)) + "." + b64.EncodeToString(key)
}

// parseItemKey reads an item's key; chunk is -1 for the item itself.
func parseItemKey(k string) (bucket string, key []byte, chunk int, err error) {
	parts := strings.Split(k, ".")
	chunk = -1
	switch {
	case len(parts) == 4 && parts[2] == "c":
		if chunk, err = strconv.Atoi(parts[3]); err != nil {
			return "", nil, 0, fmt.Errorf("state key %q: %w", k, err)
		}
	case len(parts) != 2:
		return "", nil, 0, fmt.Errorf("state key %q: not <bucket>.<key>", k)
	}
	b, err1 := b64.DecodeString(parts[0])
	key, err2 := b64.DecodeString(parts[1])
	if err := errors.Join(err1, err2); err != nil {
		return "", nil, 0, fmt.Errorf("state key %q: %w", k, err)
	}
	return string(b), key, chunk, nil
}

// ShipperConfig configures a Shipper.
type ShipperConfig struct {
	// WaitMax bounds how long a write waits for its change to be copied;
	// then it goes on (the change is copied later, from the journal) and
	// says so in the log. 0 means 10s.
	WaitMax time.Duration
	// Logger receives the shipper's log; nil discards.
	Logger *slog.Logger
}

// Shipper copies the active OMA's journal into StateBucket.
type Shipper struct {
	st  *store.Store
	js  jetstream.JetStream
	cfg ShipperConfig
	log *slog.Logger

	wake      chan struct{}
	trimmed   uint64    // the journal's last seq trimmed (Run's goroutine only)
	trimmedAt time.Time // when
	// chunks is how many chunks the bucket holds for each item put in
	// chunks, by the item's key (Run's goroutine only; nil until read
	// from the bucket, with stream).
	chunks map[string]int
	stream jetstream.Stream

	mu   sync.Mutex
	cond *sync.Cond
	sent uint64 // the journal's last seq copied
	done bool
}

// trimEvery is how many copied changes the journal keeps at most before
// they are trimmed, however soon.
const trimEvery = 4096

// NewShipper returns a shipper of st's journal through js.
func NewShipper(st *store.Store, js jetstream.JetStream, cfg ShipperConfig) *Shipper {
	if cfg.WaitMax <= 0 {
		cfg.WaitMax = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shipper{st: st, js: js, cfg: cfg, log: log, wake: make(chan struct{}, 1)}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Wait is the store's commit hook: it waits until the journal is copied
// up to seq, or WaitMax.
func (s *Shipper) Wait(seq uint64) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	deadline := time.Now().Add(s.cfg.WaitMax)
	timer := time.AfterFunc(s.cfg.WaitMax, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.sent < seq && !s.done && time.Now().Before(deadline) {
		s.cond.Wait()
	}
	if s.sent < seq && !s.done {
		s.log.Warn("a change is not yet copied for the standby; going on (it is copied from the journal later)", "seq", seq, "copied", s.sent, "waited", s.cfg.WaitMax)
	}
}

// Run copies the journal as it grows, until ctx ends.
func (s *Shipper) Run(ctx context.Context) error {
	defer func() {
		s.mu.Lock()
		s.done = true
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	retry := 100 * time.Millisecond
	for {
		changes, err := s.st.JournalAfter(s.copied(), 512)
		if err == nil && len(changes) > 0 {
			err = s.ship(ctx, changes)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("copy the state for the standby", "err", err, "retry_in", retry)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
			}
			retry = min(2*retry, 5*time.Second)
			continue
		case len(changes) == 512:
			continue // more
		}
		retry = 100 * time.Millisecond
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-time.After(time.Second):
		}
	}
}

func (s *Shipper) copied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// ship puts changes into the bucket, in order, waits for every ack,
// purges the chunks the changes left behind, and trims them from the
// journal.
func (s *Shipper) ship(ctx context.Context, changes []store.Change) error {
	if err := s.readChunks(ctx); err != nil {
		return err
	}
	var futures []jetstream.PubAckFuture
	first := make([]int, len(changes)) // each change's first message
	for i, c := range changes {
		first[i] = len(futures)
		for _, m := range messages(c) {
			f, err := s.js.PublishMsgAsync(m)
			if err != nil {
				return fmt.Errorf("copy change %d: %w", c.Seq, err)
			}
			futures = append(futures, f)
		}
	}
	wait := time.NewTimer(10 * time.Second)
	defer wait.Stop()
	acks := make([]*jetstream.PubAck, len(futures))
	for i, f := range futures {
		select {
		case acks[i] = <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("copy the state: %w", err)
		case <-wait.C:
			return errors.New("copy the state: no ack in 10s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i, c := range changes {
		if err := s.purgeChunks(ctx, c, acks[first[i]].Sequence); err != nil {
			return err
		}
	}
	last := changes[len(changes)-1].Seq
	// Trimming is a write of its own: at most once a second, or every
	// trimEvery changes (what is copied and not trimmed is skipped, and
	// copied again after a restart: harmless).
	if last-s.trimmed >= trimEvery || time.Since(s.trimmedAt) >= time.Second {
		if err := s.st.TrimJournal(last); err != nil {
			s.log.Warn("trim the journal", "err", err)
		} else {
			s.trimmed, s.trimmedAt = last, time.Now()
		}
	}
	s.mu.Lock()
	s.sent = last
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

// chunkSubjects matches every chunk in StateBucket.
const chunkSubjects = statePrefix + "*.*.c.*"

// readChunks learns, once, which items the bucket holds in chunks, and in
// how many.
func (s *Shipper) readChunks(ctx context.Context) error {
	if s.chunks != nil {
		return nil
	}
	str, err := s.js.Stream(ctx, stateStream)
	if err != nil {
		return fmt.Errorf("copy the state: %w", err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(chunkSubjects))
	if err != nil {
		return fmt.Errorf("copy the state: the chunks it holds: %w", err)
	}
	s.stream, s.chunks = str, make(map[string]int)
	for subj := range info.State.Subjects {
		item, _, _ := strings.Cut(strings.TrimPrefix(subj, statePrefix), ".c.")
		s.chunks[item]++
	}
	return nil
}

// purgeChunks purges the chunks of c's item that c no longer uses: those
// stored before seq, c's first message, when c puts fewer chunks than the
// bucket holds (a value that shrank, or was deleted).
func (s *Shipper) purgeChunks(ctx context.Context, c store.Change, seq uint64) error {
	item := itemKey(c.Bucket, c.Key)
	n := chunkCount(c)
	if s.chunks[item] <= n {
		if n > 0 {
			s.chunks[item] = n
		}
		return nil
	}
	subj := statePrefix + item + ".c.>"
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(seq)); err != nil {
		return fmt.Errorf("copy the state: purge %s before %d: %w", subj, seq, err)
	}
	if n == 0 {
		delete(s.chunks, item)
	} else {
		s.chunks[item] = n
	}
	return nil
}

// chunkCount is how many chunks messages(c) puts.
func chunkCount(c store.Change) int {
	if c.Deleted || len(c.Value) <= chunkSize {
		return 0
	}
	return (len(c.Value) + chunkSize - 1) / chunkSize
}

// messages are the bucket's messages for c: a put, a deletion, or a put
// in chunks.
func messages(c store.Change) []*nats.Msg {
	subj := statePrefix + itemKey(c.Bucket, c.Key)
	if c.Deleted {
		m := nats.NewMsg(subj)
		m.Header.Set("KV-Operation", "DEL")
		return []*nats.Msg{m}
	}
	if len(c.Value) <= chunkSize {
		return []*nats.Msg{{Subject: subj, Data: c.Value}}
	}
	var out []*nats.Msg
	n := 0
	for off := 0; off < len(c.Value); off += chunkSize {
		out = append(out, &nats.Msg{Subject: subj + ".c." + strconv.Itoa(n), Data: c.Value[off:min(off+chunkSize, len(c.Value))]})
		n++
	}
	sum := sha256.Sum256(c.Value)
	m := nats.NewMsg(subj)
	m.Header.Set(hdrChunks, strconv.Itoa(n))
	m.Header.Set(hdrSum, hex.EncodeToString(sum[:]))
	return append(out, m)
}

// Follower applies StateBucket to a standby's store.
type Follower struct {
	st  *store.Store
	js  jetstream.JetStream
	log *slog.Logger

	kick atomic.Bool // CatchUp asks for a new consumer: the old one may be on a node gone

	mu      sync.Mutex
	cond    *sync.Cond
	applied uint64 // the stream's last seq applied
	err     error  // why Run stopped
}

// NewFollower returns a follower applying the bucket to st. Run starts it
// from the beginning of the bucket, on st emptied (ResetReplica).
func NewFollower(st *store.Store, js jetstream.JetStream, log *slog.Logger) *Follower {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{st: st, js: js, log: log}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Run empties the store's replicated buckets and applies the bucket to
// it, as it changes, until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	err := f.run(ctx)
	f.mu.Lock()
	f.err = err
	if err == nil {
		f.err = errors.New("the follower stopped")
	}
	f.cond.Broadcast()
	f.mu.Unlock()
	return err
}

func (f *Follower) run(ctx context.Context) error {
	if err := f.st.ResetReplica(); err != nil {
		return err
	}
	var kv jetstream.KeyValue
	for {
		var err error
		if kv, err = f.js.KeyValue(ctx, StateBucket); err == nil {
			break
		}
		f.log.Debug("follow the state: the bucket", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	var cons jetstream.Consumer
	var err error
	for ctx.Err() == nil {
		if f.kick.Swap(false) {
			cons = nil
		}
		if cons == nil {
			// An ephemeral consumer from where the copy stands, made again
			// whenever fetching fails (its node went away, say).
			cons, err = f.js.CreateConsumer(ctx, stateStream, jetstream.ConsumerConfig{
				DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: f.Applied() + 1,
				AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1, InactiveThreshold: 30 * time.Second,
			})
			if err != nil {
				cons = nil
				f.log.Debug("follow the state: make a consumer", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
		}
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second), jetstream.FetchHeartbeat(300*time.Millisecond))
		if err != nil {
			cons = nil
			continue
		}
		var changes []store.Change
		var last uint64
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			last = md.Sequence.Stream
			c, ok := f.change(ctx, kv, msg)
			if ok {
				changes = append(changes, c)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			f.log.Debug("follow the state: fetch", "err", err)
			if last == 0 {
				cons = nil
			}
		}
		if last == 0 {
			continue
		}
		if err := f.st.ApplyReplica(changes, last); err != nil {
			return err
		}
		f.mu.Lock()
		f.applied = last
		f.cond.Broadcast()
		f.mu.Unlock()
	}
	return nil
}

// change turns one message of the bucket into a change of the store;
// false for a chunk (read with its item) and for what cannot be read.
func (f *Follower) change(ctx context.Context, kv jetstream.KeyValue, msg jetstream.Msg) (store.Change, bool) {
	k := strings.TrimPrefix(msg.Subject(), statePrefix)
	bucket, key, chunk, err := parseItemKey(k)
	if err != nil {
		f.log.Error("ignored a state item", "err", err)
		return store.Change{}, false
	}
	if chunk >= 0 {
		return store.Change{}, false
	}
	c := store.Change{Bucket: bucket, Key: key}
	if op := msg.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		c.Deleted = true
		return c, true
	}
	n, _ := strconv.Atoi(msg.Headers().Get(hdrChunks))
	if n == 0 {
		c.Value = bytes.Clone(msg.Data())
		return c, true
	}
	var value []byte
	for i := range n {
		e, err := kv.Get(ctx, k+".c."+strconv.Itoa(i))
		if err != nil {
			f.log.Warn("a chunk of a state item is gone; a newer one follows", "key", k, "chunk", i, "err", err)
			return store.Change{}, false
		}
		value = append(value, e.Value()...)
	}
	sum := sha256.Sum256(value)
	if hex.EncodeToString(sum[:]) != msg.Headers().Get(hdrSum) {
		f.log.Debug("a state item's chunks changed since; a newer one follows", "key", k)
		return store.Change{}, false
	}
	c.Value = value
	return c, true
}

// CatchUp waits until the follower has applied everything the bucket held
// when it was called, or ctx ends, or the follower stopped.
func (f *Follower) CatchUp(ctx context.Context) error {
	f.kick.Store(true)
	// Where the copy ends now; asked again while the stream elects a
	// leader (the active OMA's node may be gone with it).
	var last uint64
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second) // a leader gone never answers
		s, err := f.js.Stream(actx, stateStream)
		cancel()
		if err == nil {
			last = s.CachedInfo().State.LastSeq
			break
		}
		f.log.Debug("catch up with the state: where it ends", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the state: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.applied < last && f.err == nil && ctx.Err() == nil {
		f.cond.Wait()
	}
	switch {
	case f.applied >= last:
		return nil
	case f.err != nil:
		return fmt.Errorf("catch up with the state: %w", f.err)
	}
	return fmt.Errorf("catch up with the state (%d of %d): %w", f.applied, last, ctx.Err())
}

// Applied returns the last position of the bucket applied.
func (f *Follower) Applied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}
