package vcenters

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/vmas"
)

// Discoverer runs discoveries through VMAs and says which VMAs are
// connected; *control.Control satisfies it.
type Discoverer interface {
	Discover(ctx context.Context, req inventory.DiscoverRequest) (events.DiscoverResult, error)
	Connected() ([]string, error)
}

// DiscoveryProver proves credentials with a discovery: every connected VMA
// that may use the vCenter discovers its first datacenter (all of them
// when the vCenter names none), at once. The VMAs whose discovery
// succeeded proved access, and the inventory gains what they found. A
// discovery vCenter refuses is ErrRefused; when no VMA got through, the
// error is ErrUnreachable with each VMA's reason.
type DiscoveryProver struct {
	// D runs the discoveries.
	D Discoverer
	// Timeout bounds each VMA's discovery; 0 means 60s.
	Timeout time.Duration
}

// Prove implements Prover.
func (p DiscoveryProver) Prove(ctx context.Context, c Credentials) ([]string, error) {
	connected, err := p.D.Connected()
	if err != nil {
		return nil, err
	}
	candidates := connected
	if len(c.VMAs) > 0 {
		candidates = nil
		for _, id := range c.VMAs {
			if slices.Contains(connected, id) {
				candidates = append(candidates, id)
			}
		}
	}
	if len(candidates) == 0 {
		who := "no VMA is connected"
		if len(c.VMAs) > 0 {
			who = fmt.Sprintf("none of the VMAs allowed (%s) is connected", strings.Join(c.VMAs, ", "))
		}
		return nil, fmt.Errorf("%s: %w", who, ErrUnreachable)
	}
	dc := ""
	if len(c.Datacenters) > 0 {
		dc = c.Datacenters[0]
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		proved  []string
		refused error
		missing error
		reasons []string
	)
	for _, id := range candidates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.D.Discover(ctx, inventory.DiscoverRequest{VMAID: id, Datacenter: dc, Timeout: timeout,
				Cred: vmas.VCenterCredentials{VCenter: c.Host, Username: c.Username, Password: c.Password, CAPEM: c.CAPEM, Thumbprint: c.Thumbprint}})
			mu.Lock()
			defer mu.Unlock()
			switch fault.KindOf(err) {
			case 0:
				if err == nil {
					proved = append(proved, id)
					return
				}
			case fault.Unauthorized:
				refused = fmt.Errorf("VMA %s: %v: %w", id, err, ErrRefused)
				return
			case fault.NotFound:
				missing = fault.Errorf(fault.Invalid, "datacenters[0]", "VMA %s found no datacenter %q in %s: %v", id, dc, c.Host, err)
				return
			}
			reasons = append(reasons, fmt.Sprintf("VMA %s: %v", id, err))
		}()
	}
	wg.Wait()
	switch {
	case refused != nil:
		return nil, refused
	case len(proved) > 0:
		slices.Sort(proved)
		return proved, nil
	case missing != nil:
		return nil, missing
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	slices.Sort(reasons)
	return nil, fmt.Errorf("%s: %w", strings.Join(reasons, "; "), ErrUnreachable)
}

var _ Prover = DiscoveryProver{}
