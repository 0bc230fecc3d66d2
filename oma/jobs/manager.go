package jobs

import (
	"context"

	"go.etcd.io/bbolt"
	"log/slog"
	"sync"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/exports"
	"github.com/godwit/godwit/oma/outbox"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// DefaultPendingJobTTL is how long a job stays pending, unstarted, before
// it expires, when Config.PendingJobTTL is zero.
const DefaultPendingJobTTL = 24 * time.Hour

// DefaultPauseSnapshotMax is Config.PauseSnapshotMax's default.
const DefaultPauseSnapshotMax = time.Hour

// DefaultMaxPendingJobs is how many pending jobs one token may have when
// Config.MaxPendingJobs is zero.
const DefaultMaxPendingJobs = 20

// Config configures a Manager. DataDir is required.
type Config struct {
	// DataDir holds volumes/ (the migrated disks) and exports/ (what nbdkit serves).
	DataDir string
	// ExportHost is the host the VMA is told to reach exports at; empty
	// means 127.0.0.1.
	ExportHost string
	// APIURL is the OMA API URL given to VMAs in commands; empty means
	// http://localhost:8082.
	APIURL string
	// CancelGrace is how long the export of a cancelled job that its VMA
	// had started stays up, so that the VMA stops on the cancel rather than
	// on a dropped connection; the VMA's final status ends it early. 0
	// means 30s.
	CancelGrace time.Duration
	// PendingJobTTL is how long a job may stay pending (created, never
	// started) before it expires: it is cancelled, saying so, and its NBD
	// port released. 0 means DefaultPendingJobTTL.
	PendingJobTTL time.Duration
	// MaxPendingJobs is how many pending jobs one API token may have at
	// once; one more is refused (fault.Limit). 0 means DefaultMaxPendingJobs.
	MaxPendingJobs int
	// VerifyParallel is how many verify requests are hashed at once, over
	// all VMAs; 0 means DefaultVerifyParallel.
	VerifyParallel int
	// VerifyLimiter, if not nil, bounds the bytes per second read from the
	// volumes to answer verify requests, to spare the disks.
	VerifyLimiter Limiter
	// PauseSnapshotMax is the longest a job stays paused with its snapshot
	// kept (VMware snapshots must not live long): then it ends
	// paused-expired and its VMA removes the snapshot. 0 means
	// DefaultPauseSnapshotMax.
	PauseSnapshotMax time.Duration
	// HeartbeatTimeout is how long after its last heartbeat a VMA counts
	// as gone: a job is not given to it when several VMAs could take it.
	// 0 means queue.DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// TakeoverGrace is how long a dispatched job's VMA may be gone (after
	// HeartbeatTimeout) before another VMA takes the job over; 0 means
	// DefaultTakeoverGrace.
	TakeoverGrace time.Duration
	// AtRest keeps the password of each started job sealed at rest, so
	// that a job can move to another VMA; nil: jobs do not move.
	AtRest AtRest
	// Queue is the OMA's queue: Start puts a job in it, which dispatches
	// the job's command when a slot is free; a job that ends leaves it.
	// Required.
	Queue Queue
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Queue is where started jobs wait for a slot; *queue.Queue satisfies it.
type Queue interface {
	// Enqueue puts e into the queue in tx.
	Enqueue(tx *bbolt.Tx, e store.QueueEntry) error
	// Remove takes job id out of the queue in tx, as it ends.
	Remove(tx *bbolt.Tx, id string) error
	// Adopt counts a job its VMA started on its own as running, in tx.
	Adopt(tx *bbolt.Tx, e store.QueueEntry) error
	// PerVMA counts each VMA's jobs in the queue, waiting or running.
	PerVMA() map[string]int
	// Park moves job id out of the queue's slots in tx as it pauses.
	Park(tx *bbolt.Tx, id string) error
	// Unpark puts paused job id back in the queue in tx.
	Unpark(tx *bbolt.Tx, id string) error
	// SetRate sets job id's own bandwidth limit in the queue in tx.
	SetRate(tx *bbolt.Tx, id string, rate int64) (bool, error)
	// Hold runs update holding the queue's passes off when it can (held),
	// so that update may DispatchIn.
	Hold(update func(held bool) error) error
	// DispatchIn dispatches in tx what the jobs ended in tx freed.
	DispatchIn(tx *bbolt.Tx, ended []string) error
	// Requeue puts a job moved to another VMA back in the queue in tx.
	Requeue(tx *bbolt.Tx, e store.QueueEntry) error
	// LimitsChanged writes the event of a limits change in tx.
	LimitsChanged(tx *bbolt.Tx, p *events.QueueLimits) error
}

// AtRest seals secrets at rest; *atrest.Key satisfies it.
type AtRest interface {
	Seal(plain secret.String, context string) ([]byte, error)
	Open(sealed []byte, context string) (secret.String, error)
}

// sealer seals a secret to a VMA; *vmas.Registry satisfies it.
type sealer interface {
	Seal(vmaID string, s secret.String) (events.Sealed, error)
}

// kicker publishes what changes wrote to the outbox; *outbox.Outbox
// satisfies it.
type kicker interface {
	// Kick publishes soon, without waiting.
	Kick()
	// PublishSoon publishes now, leaving what fails for later.
	PublishSoon(ctx context.Context)
}

var (
	_ sealer = (*vmas.Registry)(nil)
	_ kicker = (*outbox.Outbox)(nil)
	_ Queue  = (*queue.Queue)(nil)
	_ AtRest = (*atrest.Key)(nil)
)

// Manager creates, starts and cancels jobs, serves their exports, and
// applies their VMAs' progress to them. It is safe for concurrent use.
type Manager struct {
	cfg     Config
	store   *store.Store
	exports *exports.Manager
	vmas    sealer
	outbox  kicker
	log     *slog.Logger

	mu       sync.Mutex // guards creating, the jobs being created; never held across I/O but bbolt reads
	creating map[string]reservation

	hashing chan struct{} // one slot per verify request being hashed

	releaseMu sync.Mutex             // guards releasing and runDone
	releasing map[string]*time.Timer // exports of cancelled jobs, by job id, released when the timer fires
	runDone   bool                   // StopReleases was called: no timer is started
}

// New returns a Manager of the jobs in st, serving their exports with exp,
// sealing passwords to VMAs with reg and publishing through out.
func New(cfg Config, st *store.Store, exp *exports.Manager, reg sealer, out kicker) *Manager {
	if cfg.ExportHost == "" {
		cfg.ExportHost = "127.0.0.1"
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "http://localhost:8082"
	}
	if cfg.PendingJobTTL == 0 {
		cfg.PendingJobTTL = DefaultPendingJobTTL
	}
	if cfg.MaxPendingJobs == 0 {
		cfg.MaxPendingJobs = DefaultMaxPendingJobs
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 30 * time.Second
	}
	if cfg.VerifyParallel <= 0 {
		cfg.VerifyParallel = DefaultVerifyParallel
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = queue.DefaultHeartbeatTimeout
	}
	if cfg.TakeoverGrace <= 0 {
		cfg.TakeoverGrace = DefaultTakeoverGrace
	}
	if cfg.PauseSnapshotMax <= 0 {
		cfg.PauseSnapshotMax = DefaultPauseSnapshotMax
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, store: st, exports: exp, vmas: reg, outbox: out, log: log,
		creating: map[string]reservation{}, hashing: make(chan struct{}, cfg.VerifyParallel), releasing: map[string]*time.Timer{}}
}

// newEvent wraps a lifecycle payload in an envelope from the OMA.
func (m *Manager) newEvent(p events.Payload) (events.Event, error) {
	return events.New("/godwit/oma", p, m.cfg.Now())
}
