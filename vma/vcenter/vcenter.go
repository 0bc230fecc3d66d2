// Package vcenter talks to vCenter with govmomi: it logs in, lists the VMs
// of one or every datacenter with their disks and networks, and logs out.
//
// LoginSealed is the one place a VMA opens a vCenter password sealed to
// its key; from there to govmomi's login the password is a secret.String,
// which never prints.
//
// Discovery asks for every VM, folder, network and datastore of a
// datacenter through one ContainerView and a single PropertyCollector
// retrieve of only the properties it needs: never a round trip per VM.
package vcenter

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/seal"
	"github.com/godwit/godwit/secret"
)

// Sentinel errors, for the REST API to map to statuses.
var (
	// ErrAuth: vCenter refused the credentials.
	ErrAuth = errors.New("vCenter login failed")
	// ErrUnreachable: vCenter did not answer, or its certificate is not trusted.
	ErrUnreachable = errors.New("vCenter unreachable")
	// ErrNotFound: a datacenter (or VM) that was named does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotAllowed: the vCenter is not on the VMA's allow list.
	ErrNotAllowed = errors.New("vCenter not allowed")
	// ErrSealed: a sealed password does not open with the VMA's key (it
	// was sealed to another key, or tampered with).
	ErrSealed = errors.New("the password is not sealed to this VMA's key")
	// ErrTrust: a request's CA PEM or thumbprint cannot be used (no
	// certificate in the PEM, a thumbprint that is not a SHA-1 or SHA-256
	// fingerprint, or both given).
	ErrTrust = errors.New("invalid vCenter certificate pin")
)

// Config says how to reach a vCenter.
type Config struct {
	// Host is the vCenter host name or address, with an optional port.
	Host     string
	Username string
	// Password is the user's password; it never prints (see package secret).
	Password secret.String
	// CAFile trusts the certificates in this PEM file besides the system's.
	CAFile string
	// Insecure skips certificate verification (development only); a
	// Thumbprint is still checked.
	Insecure bool
	// CAPEM, from the request, trusts the PEM CA certificates it holds
	// for this login besides CAFile's (the system's without CAFile).
	CAPEM string
	// Thumbprint, from the request, pins vCenter's certificate: its SHA-1
	// or SHA-256 fingerprint as colon-separated hex pairs. Only a
	// certificate with it is accepted, whoever signed it. At most one of
	// CAPEM and Thumbprint is set.
	Thumbprint string
	// Timeout bounds connecting and logging in; 0 means 15s.
	Timeout time.Duration
	// Allow lists the vCenters that may be logged in to; empty: any.
	Allow AllowList
}

// FailureCode classifies err for a failure event: one of the events.Failure*
// codes (auth, unreachable, not found, invalid for ErrNotAllowed, ErrSealed
// and ErrTrust, else internal). A certificate that is not trusted, or not
// the pinned one, is unreachable.
func FailureCode(err error) string {
	switch {
	case errors.Is(err, ErrAuth):
		return events.FailureAuth
	case errors.Is(err, ErrUnreachable):
		return events.FailureUnreachable
	case errors.Is(err, ErrNotFound):
		return events.FailureNotFound
	case errors.Is(err, ErrNotAllowed), errors.Is(err, ErrSealed), errors.Is(err, ErrTrust):
		return events.FailureInvalid
	}
	return events.FailureInternal
}

// Session is a logged-in vCenter session. Close logs it out.
type Session struct {
	Client *vim25.Client
	sm     *session.Manager
	cfg    Config
}

// Login connects to vCenter and logs in. Errors wrap ErrAuth,
// ErrUnreachable (for a certificate not trusted or not the pinned one
// too), ErrTrust, or ErrNotAllowed when cfg.Allow does not permit the host
// (then no connection is made); the password never appears in them.
func Login(ctx context.Context, cfg Config) (*Session, error) {
	if !cfg.Allow.Permits(cfg.Host) {
		return nil, fmt.Errorf("%w: %s is not one this VMA may log in to (-vcenter-allow)", ErrNotAllowed, cfg.Host)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := &url.URL{Scheme: "https", Host: cfg.Host, Path: vim25.Path}
	sc := soap.NewClient(u, cfg.Insecure)
	if err := cfg.trust(sc.DefaultTransport().TLSClientConfig, sc.SetRootCAs); err != nil {
		return nil, err
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, cfg.Host, scrub(err))
	}
	sm := session.NewManager(c)
	if err := sm.Login(ctx, url.UserPassword(cfg.Username, cfg.Password.Reveal())); err != nil {
		if fault.Is(err, &types.InvalidLogin{}) {
			return nil, fmt.Errorf("%w for user %s", ErrAuth, cfg.Username)
		}
		return nil, fmt.Errorf("%w: %s: login: %v", ErrUnreachable, cfg.Host, scrub(err))
	}
	return &Session{Client: c, sm: sm, cfg: cfg}, nil
}

// LoginSealed opens password, sealed to key, and logs in to vCenter with
// it as cfg.Username on cfg.Host (cfg.Password is ignored). It is the one
// place a VMA opens a vCenter password: the plain value then lives only in
// the session's Config, as a secret.String. Errors wrap ErrSealed (naming
// the key to seal to) or those of Login.
func LoginSealed(ctx context.Context, cfg Config, key seal.KeyPair, password events.Sealed) (*Session, error) {
	b, err := seal.Open(key, password)
	if err != nil {
		return nil, fmt.Errorf("%w: seal it to %s: %w", ErrSealed, seal.EncodeKey(key.Public), err)
	}
	cfg.Password = secret.New(string(b))
	clear(b)
	return Login(ctx, cfg)
}

// Config returns the Config the session logged in with, its password
// included (as a secret.String): what a transport that logs in on its own,
// such as VDDK, needs.
func (s *Session) Config() Config { return s.cfg }

// Close logs the session out.
func (s *Session) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.sm.Logout(ctx)
}

// scrub drops the userinfo a URL error may carry.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.User = nil
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}
