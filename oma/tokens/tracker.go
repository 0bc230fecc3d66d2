package tokens

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/store"
)

// DefaultRecordEvery is how often a Tracker writes a token's last use at
// most when TrackerConfig.RecordEvery is zero.
const DefaultRecordEvery = time.Minute

// TrackerConfig configures a Tracker; its zero value works.
type TrackerConfig struct {
	// RecordEvery is the least time between two writes of one token's last
	// use; 0 means DefaultRecordEvery.
	RecordEvery time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Tracker checks tokens and remembers when each was last used. The last
// use is kept in memory and written to the store when the one written
// before is RecordEvery old or more, so a busy token costs one bbolt write
// a minute, not one per request; Flush writes the rest (at shutdown). A
// crash loses at most RecordEvery of last-use times, never a token.
type Tracker struct {
	st    *store.Store
	cfg   TrackerConfig
	mu    sync.Mutex
	used  map[string]time.Time // last use seen, by token name
	wrote map[string]time.Time // last use written, by token name
}

// NewTracker returns a Tracker over the tokens in st.
func NewTracker(st *store.Store, cfg TrackerConfig) *Tracker {
	if cfg.RecordEvery == 0 {
		cfg.RecordEvery = DefaultRecordEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tracker{st: st, cfg: cfg, used: map[string]time.Time{}, wrote: map[string]time.Time{}}
}

// Check returns the name and scope of the token whose secret this is, and
// records its use. A failure to record the use is returned with the
// holder: the token is still valid.
func (t *Tracker) Check(secret string) (h Holder, ok bool, err error) {
	h, ok = Check(t.st, secret)
	if !ok {
		return Holder{}, false, nil
	}
	name := h.Name
	now := t.cfg.Now().UTC()
	t.mu.Lock()
	t.used[name] = now
	due := now.Sub(t.wrote[name]) >= t.cfg.RecordEvery
	if due {
		t.wrote[name] = now
	}
	t.mu.Unlock()
	if due {
		err = t.record(name, now)
	}
	return h, true, err
}

// record writes a token's last use, unless the token is gone.
func (t *Tracker) record(name string, at time.Time) error {
	err := t.st.Update(func(tx *bbolt.Tx) error {
		tok, err := store.GetToken(tx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil // revoked meanwhile
		}
		if err != nil {
			return err
		}
		if tok.LastUsedAt != nil && !at.After(*tok.LastUsedAt) {
			return nil
		}
		tok.LastUsedAt = &at
		return store.PutToken(tx, tok)
	})
	if err != nil {
		return fmt.Errorf("record use of token %q: %w", name, err)
	}
	return nil
}

// List is the package's List with the last uses not yet written.
func (t *Tracker) List() ([]Info, error) {
	all, err := List(t.st)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, info := range all {
		if u, ok := t.used[info.Name]; ok && (info.LastUsedAt == nil || u.After(*info.LastUsedAt)) {
			all[i].LastUsedAt = &u
		}
	}
	return all, nil
}

// Revoke is the package's Revoke, forgetting the token's last use too.
func (t *Tracker) Revoke(name string) error {
	if err := Revoke(t.st, name); err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.used, name)
	delete(t.wrote, name)
	t.mu.Unlock()
	return nil
}

// Flush writes every last use not written yet.
func (t *Tracker) Flush() error {
	t.mu.Lock()
	pending := map[string]time.Time{}
	for name, u := range t.used {
		if u.After(t.wrote[name]) {
			pending[name] = u
			t.wrote[name] = u
		}
	}
	t.mu.Unlock()
	var errs []error
	for name, u := range pending {
		errs = append(errs, t.record(name, u))
	}
	return errors.Join(errs...)
}
