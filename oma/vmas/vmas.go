package vmas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/secret"
)

// AccessSetter updates who may connect to NATS; *bus.Server implements it.
type AccessSetter interface {
	SetAccess(bus.Access) error
	Access() bus.Access
}

// Config configures a Registry. NATSURL is required for Forwards and AddVMA.
type Config struct {
	// NATSURL is the NATS URL given to new VMAs.
	NATSURL string
	// APIURL is the OMA API URL given to new VMAs; empty means
	// http://localhost:8082.
	APIURL string
	// ExportHost is the host the VMAs reach exports at; empty means
	// 127.0.0.1.
	ExportHost string
	// FirstPort and LastPort are the NBD port pool a VMA's SSH line may
	// reach; 0 both: none.
	FirstPort, LastPort int
	// OMAPorts are the OMA's own ports (API, NATS, sshd, NBD pool): no
	// VMA's API port may take one.
	OMAPorts []PortRange
	// NBDPortsPerVMA is how many ports of the NBD port pool each VMA
	// registered gets as its share: its jobs' exports are served on them
	// only, and its authorized_keys line opens only them. 0 means
	// DefaultNBDPortsPerVMA; a pool smaller than that is one share.
	NBDPortsPerVMA int
	// HeartbeatTimeout is how long after its last heartbeat a VMA counts
	// as connected; 0 means HeartbeatFresh.
	HeartbeatTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Registry registers VMAs, lets them into NATS and keeps their records
// (heartbeats, tunnel outages) up to date. It is safe for concurrent use.
type Registry struct {
	cfg    Config
	store  *store.Store
	bus    *bus.Conn
	access AccessSetter
	log    *slog.Logger

	mu sync.Mutex // serializes registrations, which change NATS access
}

// New returns a Registry of the VMAs in st, which lets them into NATS
// through access and creates their consumers on conn.
func New(cfg Config, st *store.Store, conn *bus.Conn, access AccessSetter) *Registry {
	if cfg.ExportHost == "" {
		cfg.ExportHost = "127.0.0.1"
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "http://localhost:8082"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = HeartbeatFresh
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, store: st, bus: conn, access: access, log: log}
}

// Credentials is what a new VMA needs to reach the OMA.
type Credentials struct {
	ID string `json:"id"`
	// NKeySeed is the VMA's NATS secret; it is shown once and not stored.
	NKeySeed string `json:"nkey_seed"`
	NATSURL  string `json:"nats_url"`
	OMAURL   string `json:"oma_url"`
	// APIPort is the OMA loopback port the VMA's API is forwarded to
	// through its SSH connection.
	APIPort int `json:"api_port"`
	// NBDPorts is the VMA's share of the NBD port pool: its jobs' exports
	// are on these ports, and its SSH key may open only them.
	NBDPorts store.Ports `json:"nbd_ports"`
	// SSHPublicKey is the VMA's SSH key as stored, empty when none was given.
	SSHPublicKey string `json:"ssh_public_key,omitempty"`
	// AuthorizedKey is the line for the OMA's sshd authorized_keys file
	// that confines SSHPublicKey to the VMA's forwards; empty without a key.
	AuthorizedKey string `json:"authorized_key,omitempty"`
}

// Registration is what registering a VMA takes.
type Registration struct {
	// ID names the VMA: letters, digits, '-', '_'.
	ID string
	// SSHPublicKey is the key the VMA opens its SSH connection with, in
	// authorized_keys form; optional. See authkeys.PublicKey for what is
	// accepted.
	SSHPublicKey string
	// APIPort is the OMA loopback port its API is to be forwarded to; 0
	// takes the lowest free one from authkeys.FirstAPIPort.
	APIPort int
	// OMAPorts are the OMA's own ports, which APIPort may not be (nor is
	// the lowest free one taken among them). AddVMA takes Config.OMAPorts.
	OMAPorts []PortRange
	// NBDPool is the NBD port pool; zero means 10100-10199. AddVMA takes
	// the pool its exports are served from.
	NBDPool store.Ports
	// NBDPortsPerVMA is how many ports of NBDPool the VMA's share holds;
	// 0 means DefaultNBDPortsPerVMA. AddVMA takes Config.NBDPortsPerVMA.
	NBDPortsPerVMA int
}

// Register creates NATS credentials for a new VMA in st, stores it with
// its SSH key, the lowest API port no other VMA or process has (from
// authkeys.FirstAPIPort) and the lowest free share of the NBD port pool
// (Registration.NBDPortsPerVMA ports), and returns them. It fails with an Invalid
// error naming id or ssh_public_key, a Conflict when the id is taken or
// the API port asked for is another's (a VMA's, the OMA's, or another
// process's), or an Unavailable one when the pool has no share left.
// AuthorizedKey, NATSURL and OMAURL are left for the caller to fill.
func Register(st *store.Store, nv Registration, now time.Time) (Credentials, error) {
	id := nv.ID
	if err := subject.ValidID(id); err != nil {
		return Credentials{}, fault.Errorf(fault.Invalid, "id", "%v", err)
	}
	if err := checkAPIPort(nv.APIPort); err != nil {
		return Credentials{}, err
	}
	if err := checkOMAPorts(nv.APIPort, nv.OMAPorts); err != nil {
		return Credentials{}, err
	}
	var sshKey string
	if nv.SSHPublicKey != "" {
		k, err := authkeys.PublicKey(nv.SSHPublicKey)
		if err != nil {
			return Credentials{}, fault.Errorf(fault.Invalid, "ssh_public_key", "%v", err)
		}
		sshKey = k
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Credentials{}, fmt.Errorf("create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Credentials{}, fmt.Errorf("create nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Credentials{}, fmt.Errorf("create nkey: %w", err)
	}
	var (
		apiPort int
		share   store.Ports
	)
	err = st.Update(func(tx *bbolt.Tx) error {
		if _, err := store.GetVMA(tx, id); err == nil {
			return fault.Errorf(fault.Conflict, "id", "VMA %q is already registered", id)
		}
		vmas, err := store.VMAs(tx)
		if err != nil {
			return err
		}
		if apiPort = nv.APIPort; apiPort == 0 {
			if apiPort, err = freeAPIPort(vmas, nv.OMAPorts); err != nil {
				return err
			}
		}
		if err := apiPortFree(vmas, apiPort); err != nil {
			return err
		}
		if err := checkUnheld(apiPort); err != nil {
			return err
		}
		if share, err = freeShare(vmas, orDefaultPool(nv.NBDPool), nv.NBDPortsPerVMA, ""); err != nil {
			return err
		}
		return store.PutVMA(tx, store.VMA{ID: id, NKey: pub, RegisteredAt: now.UTC(), SSHPublicKey: sshKey, APIPort: apiPort, NBDPorts: &share})
	})
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{ID: id, NKeySeed: string(seed), APIPort: apiPort, NBDPorts: share, SSHPublicKey: sshKey}, nil
}

// AddVMA registers a VMA on a running OMA: its durable consumers are
// created, then it is stored and NATS lets it in. It is all or nothing: when
// its consumers cannot be created (an Upstream error) or NATS refuses the new
// access, the VMA is not registered.
//
// With an SSH key the answer holds its authorized_keys line.
func (r *Registry) AddVMA(ctx context.Context, nv Registration) (Credentials, error) {
	id := nv.ID
	// Only registrations wait for each other (creating consumers, reloading
	// NATS access); jobs are created meanwhile.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := subject.ValidID(id); err != nil {
		return Credentials{}, fault.Errorf(fault.Invalid, "id", "%v", err)
	}
	if nv.SSHPublicKey != "" {
		// Refuse a bad key before creating consumers for the VMA.
		if _, err := authkeys.PublicKey(nv.SSHPublicKey); err != nil {
			return Credentials{}, fault.Errorf(fault.Invalid, "ssh_public_key", "%v", err)
		}
	}
	nv.OMAPorts, nv.NBDPool, nv.NBDPortsPerVMA = r.cfg.OMAPorts, r.pool(), r.cfg.NBDPortsPerVMA
	if err := checkAPIPort(nv.APIPort); err != nil {
		return Credentials{}, err
	}
	if err := checkOMAPorts(nv.APIPort, nv.OMAPorts); err != nil {
		return Credentials{}, err
	}
	fw, err := r.Forwards()
	if err != nil {
		return Credentials{}, err
	}
	err = r.store.View(func(tx *bbolt.Tx) error {
		_, err := store.GetVMA(tx, id)
		switch {
		case err == nil:
			return fault.Errorf(fault.Conflict, "id", "VMA %q is already registered", id)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		vmas, err := store.VMAs(tx)
		if err != nil {
			return err
		}
		if nv.APIPort != 0 {
			if err := apiPortFree(vmas, nv.APIPort); err != nil {
				return err
			}
		}
		// Refused before the VMA's consumers are created.
		_, err = freeShare(vmas, nv.NBDPool, nv.NBDPortsPerVMA, "")
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	if err := r.bus.EnsureVMAConsumers(ctx, id); err != nil {
		return Credentials{}, &fault.Error{Kind: fault.Upstream, Msg: "create the consumers of VMA " + id, Err: err}
	}
	cred, err := Register(r.store, nv, r.cfg.Now())
	if err != nil {
		return cred, err
	}
	if err := r.setAccess(); err != nil {
		if derr := r.store.Update(func(tx *bbolt.Tx) error { return store.DeleteVMA(tx, id) }); derr != nil {
			r.log.Error("forget the VMA NATS refused", "vma", id, "err", derr)
		}
		return Credentials{}, fmt.Errorf("register vma %s: %w", id, err)
	}
	cred.NATSURL, cred.OMAURL = r.cfg.NATSURL, r.cfg.APIURL
	v := store.VMA{ID: cred.ID, SSHPublicKey: cred.SSHPublicKey, APIPort: cred.APIPort, NBDPorts: &cred.NBDPorts}
	if cred.AuthorizedKey, err = AuthorizedKey(fw, v); err != nil {
		// Registered already: the line can be had again from the list.
		r.log.Error("authorized_keys line", "vma", id, "err", err)
	}
	return cred, nil
}

// setAccess lets every registered VMA into NATS, and nobody else.
func (r *Registry) setAccess() error {
	vmas, err := r.VMAs()
	if err != nil {
		return err
	}
	a := r.access.Access()
	a.VMAs = map[string]string{}
	for _, v := range vmas {
		a.VMAs[v.ID] = v.NKey
	}
	return r.access.SetAccess(a)
}

// SyncAccess makes NATS access and the VMA consumers match the registered
// VMAs. A VMA whose consumers cannot be created yet (their stream elects
// a leader after a node was lost, say) is logged and tried again in the
// background, every few seconds until it works or ctx ends: the others
// keep working, and the OMA does not wait.
func (r *Registry) SyncAccess(ctx context.Context) error {
	if err := r.setAccess(); err != nil {
		return err
	}
	vmas, err := r.VMAs()
	if err != nil {
		return err
	}
	var later []string
	for _, v := range vmas {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.bus.EnsureVMAConsumers(actx, v.ID)
		cancel()
		if err != nil {
			r.log.Warn("VMA consumers cannot be created yet: it gets no commands until they can; trying again", "vma", v.ID, "err", err)
			later = append(later, v.ID)
		}
	}
	if len(later) > 0 {
		go r.ensureConsumers(ctx, later)
	}
	return nil
}

// ensureConsumers tries to create the consumers of the VMAs ids until it
// has, or ctx ends.
func (r *Registry) ensureConsumers(ctx context.Context, ids []string) {
	for delay := time.Second; len(ids) > 0; delay = min(2*delay, 30*time.Second) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var left []string
		for _, id := range ids {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.bus.EnsureVMAConsumers(actx, id)
			cancel()
			if err != nil {
				left = append(left, id)
				continue
			}
			r.log.Info("VMA consumers created", "vma", id)
		}
		if len(left) == len(ids) {
			r.log.Warn("VMA consumers cannot be created yet; trying again", "vmas", left, "retry_in", delay)
		}
		ids = left
	}
}

// VMAs returns the registered VMAs, by id.
func (r *Registry) VMAs() ([]store.VMA, error) {
	var out []store.VMA
	err := r.store.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = store.VMAs(tx)
		return err
	})
	slices.SortFunc(out, func(a, b store.VMA) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out, err
}

// VCenterCredentials are vCenter credentials given for one request; the password
// is sealed to the VMA at once and never stored.
type VCenterCredentials struct {
	VCenter  string
	Username string
	Password secret.String
	// CAPEM or Thumbprint, when set, pin vCenter's certificate for the
	// VMA's login (see events.DiscoverRequest): no secrets.
	CAPEM      string
	Thumbprint string
}

// Seal seals a secret to a registered VMA's announced key. It fails with
// a NotFound naming vma_id when the VMA is not registered, a Conflict when
// it has not announced its key yet.
func (r *Registry) Seal(vmaID string, s secret.String) (events.Sealed, error) {
	var v store.VMA
	err := r.store.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = store.GetVMA(tx, vmaID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return events.Sealed{}, fault.Errorf(fault.NotFound, "vma_id", "VMA %q is not registered (oma vma add --id %s)", vmaID, vmaID)
	}
	if err != nil {
		return events.Sealed{}, err
	}
	if v.PublicKey == "" {
		return events.Sealed{}, fault.Errorf(fault.Conflict, "vma_id", "VMA %s has not announced its public key yet (no heartbeat received): start it, or check its connection", vmaID)
	}
	return seal.Seal(v.PublicKey, []byte(s.Reveal()))
}

// SetVMARate changes the bandwidth limit of all of VMA id's jobs together
// and its windows; the queue shares it between them. also, when not nil,
// runs in the transaction, with the VMA as changed.
func (r *Registry) SetVMARate(id string, ch store.RateChange, also func(*bbolt.Tx, store.VMA) error) (store.VMA, error) {
	var v store.VMA
	err := r.store.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetVMA(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.Errorf(fault.NotFound, "id", "VMA %q is not registered", id)
		}
		if err != nil {
			return err
		}
		ch.Apply(&cur.RateLimit, &cur.RateWindows)
		v = cur
		if also != nil {
			if err := also(tx, cur); err != nil {
				return err
			}
		}
		return store.PutVMA(tx, cur)
	})
	return v, err
}
