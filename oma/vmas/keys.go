package vmas

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// AuthorizedKey returns the authorized_keys line of v for the forwards fw,
// or "" when v has no SSH key. The line opens the NBD ports of v's share
// of fw's pool only (the whole pool for a VMA registered before shares).
func AuthorizedKey(fw authkeys.Forwards, v store.VMA) (string, error) {
	if v.SSHPublicKey == "" {
		return "", nil
	}
	if v.APIPort == 0 {
		return "", fmt.Errorf("vma %s has an SSH key but no API port", v.ID)
	}
	ports, err := NBDPorts(v, orDefaultPool(store.Ports{First: fw.FirstPort, Last: fw.LastPort}))
	if err != nil {
		return "", fmt.Errorf("authorized_keys line: %w", err)
	}
	fw.FirstPort, fw.LastPort = ports.First, ports.Last
	return authkeys.Line(fw, v.SSHPublicKey, v.ID)
}

// Forwards returns what a VMA may reach through its SSH connection on this
// OMA: its NATS address, the export host and the NBD port pool.
func (r *Registry) Forwards() (authkeys.Forwards, error) {
	var hosts []string
	for _, raw := range strings.Split(r.cfg.NATSURL, ",") { // a cluster's nodes: each
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return authkeys.Forwards{}, fmt.Errorf("nats url %q: %w", raw, err)
		}
		hosts = append(hosts, u.Host)
	}
	return authkeys.Forwards{NATS: strings.Join(hosts, ","), NBDHost: r.cfg.ExportHost, FirstPort: r.cfg.FirstPort, LastPort: r.cfg.LastPort}, nil
}

// AuthorizedKeys returns the authorized_keys lines of every registered VMA
// that has an SSH key, by VMA id.
func (r *Registry) AuthorizedKeys() ([]string, error) {
	fw, err := r.Forwards()
	if err != nil {
		return nil, err
	}
	vmas, err := r.VMAs()
	if err != nil {
		return nil, err
	}
	return authorizedKeys(fw, vmas)
}

// AuthorizedKeys returns the authorized_keys lines of every VMA in st that
// has an SSH key, by VMA id, for the forwards fw. A VMA whose share of the
// NBD port pool lies outside fw's pool gets a comment saying so instead.
func AuthorizedKeys(st *store.Store, fw authkeys.Forwards) ([]string, error) {
	var vmas []store.VMA
	err := st.View(func(tx *bbolt.Tx) error {
		var err error
		vmas, err = store.VMAs(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read vmas: %w", err)
	}
	return authorizedKeys(fw, vmas)
}

func authorizedKeys(fw authkeys.Forwards, vmas []store.VMA) ([]string, error) {
	slices.SortFunc(vmas, func(a, b store.VMA) int { return strings.Compare(a.ID, b.ID) })
	lines := []string{}
	for _, v := range vmas {
		line, err := AuthorizedKey(fw, v)
		if fault.KindOf(err) == fault.Unavailable {
			// A share outside the pool: no line, and the others still.
			lines = append(lines, "# no line for VMA "+v.ID+": "+err.Error())
			continue
		}
		if err != nil {
			return nil, err
		}
		if line != "" {
			lines = append(lines, line)
		}
	}
	return lines, nil
}
