package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nkeys"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/bus"
	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/seal"
)

// HeartbeatFresh is how recent a VMA's last heartbeat must be for the VMA
// to count as connected.
const HeartbeatFresh = 90 * time.Second

// VMACredentials is what a new VMA needs to reach the OMA.
type VMACredentials struct {
	ID string `json:"id"`
	// NKeySeed is the VMA's NATS secret; it is shown once and not stored.
	NKeySeed string `json:"nkey_seed"`
	NATSURL  string `json:"nats_url"`
	OMAURL   string `json:"oma_url"`
}

// RegisterVMA creates NATS credentials for a new VMA in st and returns
// them. It fails with a Conflict when the id is taken.
func RegisterVMA(st *store.Store, id string, now time.Time) (VMACredentials, error) {
	if err := subject.ValidID(id); err != nil {
		return VMACredentials{}, errorf(Invalid, "id", "%v", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return VMACredentials{}, fmt.Errorf("create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return VMACredentials{}, fmt.Errorf("create nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return VMACredentials{}, fmt.Errorf("create nkey: %w", err)
	}
	err = st.Update(func(tx *bbolt.Tx) error {
		if _, err := store.GetVMA(tx, id); err == nil {
			return errorf(Conflict, "id", "VMA %q is already registered", id)
		}
		return store.PutVMA(tx, store.VMA{ID: id, NKey: pub, RegisteredAt: now.UTC()})
	})
	if err != nil {
		return VMACredentials{}, err
	}
	return VMACredentials{ID: id, NKeySeed: string(seed)}, nil
}

// AddVMA registers a VMA on a running OMA: its durable consumers are
// created, then it is stored and NATS lets it in. It is all or nothing: when
// its consumers cannot be created (an Upstream error) or NATS refuses the new
// access, the VMA is not registered.
func (c *Control) AddVMA(ctx context.Context, id string) (VMACredentials, error) {
	// Only registrations wait for each other (creating consumers, reloading
	// NATS access); jobs are created meanwhile.
	c.vmaMu.Lock()
	defer c.vmaMu.Unlock()
	if err := subject.ValidID(id); err != nil {
		return VMACredentials{}, errorf(Invalid, "id", "%v", err)
	}
	err := c.store.View(func(tx *bbolt.Tx) error {
		_, err := store.GetVMA(tx, id)
		switch {
		case err == nil:
			return errorf(Conflict, "id", "VMA %q is already registered", id)
		case errors.Is(err, store.ErrNotFound):
			return nil
		}
		return err
	})
	if err != nil {
		return VMACredentials{}, err
	}
	if err := c.bus.EnsureVMAConsumers(ctx, id); err != nil {
		return VMACredentials{}, &Error{Kind: Upstream, Msg: "create the consumers of VMA " + id, Err: err}
	}
	cred, err := RegisterVMA(c.store, id, c.cfg.Now())
	if err != nil {
		return cred, err
	}
	if err := c.setAccess(); err != nil {
		if derr := c.store.Update(func(tx *bbolt.Tx) error { return store.DeleteVMA(tx, id) }); derr != nil {
			c.log.Error("forget the VMA NATS refused", "vma", id, "err", derr)
		}
		return VMACredentials{}, fmt.Errorf("register vma %s: %w", id, err)
	}
	cred.NATSURL, cred.OMAURL = c.cfg.NATSURL, c.cfg.APIURL
	return cred, nil
}

// setAccess lets every registered VMA into NATS, and nobody else.
func (c *Control) setAccess() error {
	vmas, err := c.VMAs()
	if err != nil {
		return err
	}
	a := c.access.Access()
	a.VMAs = map[string]string{}
	for _, v := range vmas {
		a.VMAs[v.ID] = v.NKey
	}
	return c.access.SetAccess(a)
}

// syncAccess makes NATS access and the VMA consumers match the registered
// VMAs. A VMA whose consumers cannot be created is logged and skipped: the
// others keep working.
func (c *Control) syncAccess(ctx context.Context) error {
	if err := c.setAccess(); err != nil {
		return err
	}
	vmas, err := c.VMAs()
	if err != nil {
		return err
	}
	for _, v := range vmas {
		if err := c.bus.EnsureVMAConsumers(ctx, v.ID); err != nil {
			c.log.Error("VMA consumers cannot be created: it gets no commands until they can", "vma", v.ID, "err", err)
		}
	}
	return nil
}

// VMAs returns the registered VMAs, by id.
func (c *Control) VMAs() ([]store.VMA, error) {
	var out []store.VMA
	err := c.store.View(func(tx *bbolt.Tx) error {
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

// Connected returns the ids of the VMAs whose last heartbeat is fresh.
func (c *Control) Connected() ([]string, error) {
	vmas, err := c.VMAs()
	if err != nil {
		return nil, err
	}
	ids := []string{}
	now := c.cfg.Now()
	for _, v := range vmas {
		if v.LastSeen != nil && now.Sub(*v.LastSeen) < HeartbeatFresh {
			ids = append(ids, v.ID)
		}
	}
	return ids, nil
}

// applyHeartbeat records a VMA's presence, version and public key. The
// VMA was seen when the OMA's clock says, whatever its own clock says.
func (c *Control) applyHeartbeat(_ context.Context, ev events.Event, p events.Payload) error {
	h, ok := p.(*events.Heartbeat)
	if !ok {
		return fmt.Errorf("%w: %s on the presence consumer", bus.ErrPoison, ev.Type)
	}
	return c.applyOnce(ev, func(tx *bbolt.Tx) error {
		v, err := store.GetVMA(tx, h.VMAID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: heartbeat of unregistered VMA %s", bus.ErrPoison, h.VMAID)
		}
		if err != nil {
			return err
		}
		seen := c.cfg.Now().UTC()
		v.LastSeen, v.Version, v.PublicKey = &seen, h.Version, h.PublicKey
		return store.PutVMA(tx, v)
	})
}

// Credentials are vCenter credentials given for one request; the password
// is sealed to the VMA at once and never stored.
type Credentials struct {
	VCenter  string
	Username string
	Password string
}

// sealFor seals a password to a registered VMA's announced key.
func (c *Control) sealFor(vmaID, password string) (events.Sealed, error) {
	var v store.VMA
	err := c.store.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = store.GetVMA(tx, vmaID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return events.Sealed{}, errorf(NotFound, "vma_id", "VMA %q is not registered (oma vma add --id %s)", vmaID, vmaID)
	}
	if err != nil {
		return events.Sealed{}, err
	}
	if v.PublicKey == "" {
		return events.Sealed{}, errorf(Conflict, "vma_id", "VMA %s has not announced its public key yet (no heartbeat received): start it, or check its connection", vmaID)
	}
	return seal.Seal(v.PublicKey, []byte(password))
}
