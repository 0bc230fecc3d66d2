// Package vcenters registers the vCenters the OMA replicates from, once,
// so that jobs and plans name a vCenter instead of carrying its password.
//
// A vCenter's credentials are proved before they are stored: a Prover (a
// connected VMA that may reach the host) logs in with them. Its password is
// then kept only sealed under the OMA's at-rest key (package oma/atrest),
// bound to the vCenter's name; reads never return it. Rotating the
// password proves the new one first.
package vcenters

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/atrest"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/secret"
)

// Credentials are what a Prover logs in with.
type Credentials struct {
	Host        string
	Username    string
	Password    secret.String
	Datacenters []string
	CAPEM       string
	Thumbprint  string
	// VMAs, when not empty, are the only VMAs that may prove them.
	VMAs []string
}

// Prover proves that credentials log in to their vCenter, from the VMAs
// that may reach it. It returns the VMAs that did. An error wrapping
// ErrRefused says vCenter refused the username or password, one wrapping
// ErrUnreachable that no VMA could reach the host.
type Prover interface {
	Prove(ctx context.Context, c Credentials) (vmas []string, err error)
}

var (
	// ErrRefused says vCenter refused the credentials.
	ErrRefused = errors.New("vCenter refused the credentials")
	// ErrUnreachable says no VMA could reach the vCenter.
	ErrUnreachable = errors.New("no connected VMA could reach the vCenter")
)

// Spec is a vCenter to register: its name and its credentials.
type Spec struct {
	Name string
	Credentials
	// Limits bound the jobs reading from the vCenter at once; zero fields
	// are the queue's defaults.
	Limits store.SourceLimits
}

// View is a registered vCenter as reads show it: no password.
type View struct {
	Name        string   `json:"name"`
	Host        string   `json:"host"`
	Username    string   `json:"username"`
	Datacenters []string `json:"datacenters,omitempty"`
	CAPEM       string   `json:"ca_pem,omitempty"`
	Thumbprint  string   `json:"thumbprint,omitempty"`
	VMAs        []string `json:"vmas"`
	// Limits are the limits in force: those set, the queue's defaults for
	// the others.
	Limits     store.SourceLimits `json:"limits"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	PasswordAt time.Time          `json:"password_set_at"`
}

// Registry keeps the registered vCenters in the OMA's store.
type Registry struct {
	st     *store.Store
	key    *atrest.Key
	prover Prover
	now    func() time.Time
}

// New returns a Registry over st that seals passwords with key and proves
// credentials with prover; now is the clock (nil: time.Now).
func New(st *store.Store, key *atrest.Key, prover Prover, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{st: st, key: key, prover: prover, now: now}
}

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	// validThumb is a SHA-1 (20 bytes) or SHA-256 (32 bytes) fingerprint,
	// as the events' schemas want it.
	validThumb = regexp.MustCompile(`^([0-9A-Fa-f]{2}:){19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$`)
)

// maxCAPEM bounds a vCenter's CA PEM: it travels in every discover request
// and replicate command, whose schemas take at most 64 KiB.
const maxCAPEM = 64 << 10

// context is what a vCenter's sealed password is bound to.
func sealContext(name string) string { return "vcenter:" + name }

// check validates s, naming the first field that is wrong.
func (s Spec) check() error {
	switch {
	case !validName.MatchString(s.Name):
		return fault.Errorf(fault.Invalid, "name", "name %q: use 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit", s.Name)
	case s.Host == "" || strings.ContainsAny(s.Host, "/@ ?#") || strings.Contains(s.Host, "://"):
		return fault.Errorf(fault.Invalid, "host", "host %q: want a host name or address, with an optional :port, and no scheme or path", s.Host)
	case s.Username == "":
		return fault.Errorf(fault.Invalid, "username", "username is required")
	case s.Password.Reveal() == "":
		return fault.Errorf(fault.Invalid, "password", "password is required")
	case s.CAPEM != "" && s.Thumbprint != "":
		return fault.Errorf(fault.Invalid, "thumbprint", "give ca_pem or thumbprint, not both")
	case len(s.CAPEM) > maxCAPEM:
		return fault.Errorf(fault.Invalid, "ca_pem", "ca_pem has %d bytes: at most %d", len(s.CAPEM), maxCAPEM)
	case s.CAPEM != "" && !strings.Contains(s.CAPEM, "-----BEGIN CERTIFICATE-----"):
		return fault.Errorf(fault.Invalid, "ca_pem", "ca_pem holds no PEM certificate")
	case s.Thumbprint != "" && !validThumb.MatchString(s.Thumbprint):
		return fault.Errorf(fault.Invalid, "thumbprint", "thumbprint %q: want the certificate's SHA-1 or SHA-256 as hex pairs separated by colons", s.Thumbprint)
	}
	if h, _, err := net.SplitHostPort(s.Host); err == nil && h == "" {
		return fault.Errorf(fault.Invalid, "host", "host %q has no name", s.Host)
	}
	for i, d := range s.Datacenters {
		if strings.TrimSpace(d) == "" {
			return fault.Errorf(fault.Invalid, fmt.Sprintf("datacenters[%d]", i), "datacenters[%d] is empty", i)
		}
	}
	for i, v := range s.VMAs {
		if strings.TrimSpace(v) == "" {
			return fault.Errorf(fault.Invalid, fmt.Sprintf("vmas[%d]", i), "vmas[%d] is empty", i)
		}
	}
	return nil
}

// prove asks the Prover, and turns its refusals into faults naming the
// field a person must fix.
func (r *Registry) prove(ctx context.Context, c Credentials) ([]string, error) {
	vmas, err := r.prover.Prove(ctx, c)
	switch {
	case errors.Is(err, ErrRefused):
		return nil, fault.Errorf(fault.Invalid, "password", "vCenter %s refused user %q with this password: %v", c.Host, c.Username, err)
	case errors.Is(err, ErrUnreachable):
		return nil, fault.Errorf(fault.Invalid, "host", "%s: %v", c.Host, err)
	case fault.KindOf(err) != 0:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("prove the credentials of %s: %w", c.Host, err)
	case len(vmas) == 0:
		return nil, fault.Errorf(fault.Invalid, "host", "%s: %v", c.Host, ErrUnreachable)
	}
	return vmas, nil
}

// Create proves s's credentials and registers it. The name must be free
// (a Conflict fault otherwise); VMAs defaults to those that proved access.
func (r *Registry) Create(ctx context.Context, s Spec) (View, error) {
	if r.key == nil {
		return View{}, fault.Errorf(fault.Unavailable, "", "this OMA has no at-rest key to seal vCenter passwords with")
	}
	if err := s.check(); err != nil {
		return View{}, err
	}
	if err := CheckLimits("limits", s.Limits); err != nil {
		return View{}, err
	}
	if _, err := r.Get(s.Name); err == nil {
		return View{}, fault.Errorf(fault.Conflict, "name", "a vCenter named %q is registered already", s.Name)
	}
	proved, err := r.prove(ctx, s.Credentials)
	if err != nil {
		return View{}, err
	}
	sealed, err := r.key.Seal(s.Password, sealContext(s.Name))
	if err != nil {
		return View{}, err
	}
	now := r.now().UTC()
	v := store.VCenter{Name: s.Name, Host: s.Host, Username: s.Username, PasswordSealed: sealed, Datacenters: s.Datacenters,
		CAPEM: s.CAPEM, Thumbprint: s.Thumbprint, VMAs: s.VMAs, Limits: s.Limits, CreatedAt: now, UpdatedAt: now, PasswordAt: now}
	if len(v.VMAs) == 0 {
		v.VMAs = slices.Sorted(slices.Values(proved))
	}
	err = r.st.Update(func(tx *bbolt.Tx) error {
		if _, err := store.GetVCenter(tx, s.Name); err == nil {
			return fault.Errorf(fault.Conflict, "name", "a vCenter named %q is registered already", s.Name)
		}
		return store.PutVCenter(tx, v)
	})
	if err != nil {
		return View{}, err
	}
	return view(v), nil
}

// Rotate proves a new password for the vCenter named name and stores it.
func (r *Registry) Rotate(ctx context.Context, name string, password secret.String) (View, error) {
	if password.Reveal() == "" {
		return View{}, fault.Errorf(fault.Invalid, "password", "password is required")
	}
	return r.Update(ctx, name, Change{Password: password})
}

// Change is what Update changes: a zero field keeps what is stored.
type Change struct {
	Password secret.String
	VMAs     []string
	Limits   *store.SourceLimits
	// Also, when not nil, runs in the transaction that stores the change,
	// with the vCenter as changed.
	Also func(*bbolt.Tx, store.VCenter) error
}

// Update changes the password, the VMAs and the limits of the vCenter
// named name. A new password or list of VMAs is proved first, through the
// new list: at least one of its VMAs must log in (the others may be
// offline). Nothing changes when it is refused or a field is wrong.
func (r *Registry) Update(ctx context.Context, name string, ch Change) (View, error) {
	password, vmas := ch.Password, ch.VMAs
	if password.Reveal() == "" && vmas == nil && ch.Limits == nil {
		return View{}, fault.Errorf(fault.Invalid, "", "nothing to change: give password, vmas or limits")
	}
	if ch.Limits != nil {
		if err := CheckLimits("limits", *ch.Limits); err != nil {
			return View{}, err
		}
	}
	if vmas != nil && len(vmas) == 0 {
		return View{}, fault.Errorf(fault.Invalid, "vmas", "vmas is empty: name the VMAs that may use the vCenter")
	}
	for i, v := range vmas {
		if strings.TrimSpace(v) == "" || slices.Contains(vmas[:i], v) {
			return View{}, fault.Errorf(fault.Invalid, fmt.Sprintf("vmas[%d]", i), "vmas[%d] %q is empty or named twice", i, v)
		}
	}
	v, err := r.get(name)
	if err != nil {
		return View{}, err
	}
	pw := password
	if pw.Reveal() == "" {
		if pw, err = r.key.Open(v.PasswordSealed, sealContext(name)); err != nil {
			return View{}, err
		}
	}
	c := Credentials{Host: v.Host, Username: v.Username, Password: pw, Datacenters: v.Datacenters, CAPEM: v.CAPEM,
		Thumbprint: v.Thumbprint, VMAs: v.VMAs}
	if vmas != nil {
		c.VMAs = vmas
	}
	if password.Reveal() != "" || vmas != nil {
		if _, err := r.prove(ctx, c); err != nil {
			return View{}, err
		}
	}
	var sealed []byte
	if password.Reveal() != "" {
		if sealed, err = r.key.Seal(password, sealContext(name)); err != nil {
			return View{}, err
		}
	}
	err = r.st.Update(func(tx *bbolt.Tx) error {
		cur, err := store.GetVCenter(tx, name)
		if err != nil {
			return notFound(name, err)
		}
		now := r.now().UTC()
		cur.UpdatedAt = now
		if sealed != nil {
			cur.PasswordSealed, cur.PasswordAt = sealed, now
		}
		if vmas != nil {
			cur.VMAs = vmas
		}
		if ch.Limits != nil {
			cur.Limits = *ch.Limits
		}
		v = cur
		if ch.Also != nil {
			if err := ch.Also(tx, cur); err != nil {
				return err
			}
		}
		return store.PutVCenter(tx, cur)
	})
	if err != nil {
		return View{}, err
	}
	return view(v), nil
}

// Password opens the stored password of the vCenter named name, for a
// job that is about to seal it to its VMA.
func (r *Registry) Password(name string) (secret.String, error) {
	v, err := r.get(name)
	if err != nil {
		return secret.String{}, err
	}
	return r.key.Open(v.PasswordSealed, sealContext(name))
}

// Get returns the vCenter named name; a NotFound fault when there is none.
func (r *Registry) Get(name string) (View, error) {
	v, err := r.get(name)
	if err != nil {
		return View{}, err
	}
	return view(v), nil
}

func (r *Registry) get(name string) (store.VCenter, error) {
	var v store.VCenter
	err := r.st.View(func(tx *bbolt.Tx) error {
		var err error
		v, err = store.GetVCenter(tx, name)
		return err
	})
	if err != nil {
		return store.VCenter{}, notFound(name, err)
	}
	return v, nil
}

// List returns every registered vCenter, by name.
func (r *Registry) List() ([]View, error) {
	var vs []store.VCenter
	if err := r.st.View(func(tx *bbolt.Tx) error {
		var err error
		vs, err = store.VCenters(tx)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]View, len(vs))
	for i, v := range vs {
		out[i] = view(v)
	}
	return out, nil
}

// Delete unregisters the vCenter named name. inUse, if not nil, says
// whether something (a plan) still uses it: a Conflict fault then.
func (r *Registry) Delete(name string, inUse func(tx *bbolt.Tx, name string) (string, bool)) error {
	return r.st.Update(func(tx *bbolt.Tx) error {
		if inUse != nil {
			if who, ok := inUse(tx, name); ok {
				return fault.Errorf(fault.Conflict, "name", "vCenter %q is used by %s", name, who)
			}
		}
		return notFound(name, store.DeleteVCenter(tx, name))
	})
}

// notFound turns the store's ErrNotFound into a NotFound fault.
func notFound(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fault.Errorf(fault.NotFound, "name", "no vCenter named %q is registered", name)
	}
	return err
}

func view(v store.VCenter) View {
	return View{Name: v.Name, Host: v.Host, Username: v.Username, Datacenters: v.Datacenters, CAPEM: v.CAPEM,
		Thumbprint: v.Thumbprint, VMAs: append([]string{}, v.VMAs...), Limits: queue.Fill(v.Limits, queue.DefaultSourceLimits),
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, PasswordAt: v.PasswordAt}
}

// MaxLimit is the largest limit a vCenter, ESXi host or datastore may
// have.
const MaxLimit = 1000

// CheckLimits checks source limits, naming the first wrong field under
// prefix (such as "limits"): each 0 (the default) or 1 to MaxLimit.
func CheckLimits(prefix string, l store.SourceLimits) error {
	for _, f := range []struct {
		name string
		n    int
	}{{"vcenter", l.VCenter}, {"esxi_host", l.ESXiHost}, {"datastore", l.Datastore}} {
		if f.n < 0 || f.n > MaxLimit {
			return fault.Errorf(fault.Invalid, prefix+"."+f.name, "%s.%s must be from 1 to %d jobs at once (0 or absent: the default), not %d", prefix, f.name, MaxLimit, f.n)
		}
	}
	return nil
}
