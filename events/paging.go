package events

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrVMTooLarge is returned by Paginate when one VM alone does not fit a page.
var ErrVMTooLarge = errors.New("VM too large for one message")

// Paginate splits r into results whose JSON encoding takes at most limit
// bytes each, keeping the order of the VMs. A result that fits is returned
// whole, without page numbers; otherwise every page carries Page and
// Pages. It fails with ErrVMTooLarge when one VM alone cannot fit.
func (r DiscoverResult) Paginate(limit int) ([]DiscoverResult, error) {
	whole, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode discover result: %w", err)
	}
	if len(whole) <= limit || r.Error != nil {
		r.Page, r.Pages = 0, 0
		return []DiscoverResult{r}, nil
	}
	head := r
	head.VMs, head.Page, head.Pages = []VM{}, len(r.VMs), len(r.VMs) // page numbers as wide as they can be
	empty, err := json.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("encode discover result: %w", err)
	}
	var pages [][]VM
	var cur []VM
	size := len(empty)
	for _, vm := range r.VMs {
		b, err := json.Marshal(vm)
		if err != nil {
			return nil, fmt.Errorf("encode VM %s: %w", vm.ID, err)
		}
		n := len(b) + 1 // and a comma
		if len(empty)+n > limit {
			return nil, fmt.Errorf("VM %s takes %d bytes, a page at most %d: %w", vm.ID, len(b), limit-len(empty), ErrVMTooLarge)
		}
		if size+n > limit {
			pages, cur, size = append(pages, cur), nil, len(empty)
		}
		cur, size = append(cur, vm), size+n
	}
	pages = append(pages, cur)
	out := make([]DiscoverResult, len(pages))
	for i, vms := range pages {
		out[i] = r
		out[i].VMs, out[i].Page, out[i].Pages = vms, i+1, len(pages)
	}
	return out, nil
}

// DiscoverPages assembles the pages of one discovery (one request id). Its
// zero value is ready to use; it is not safe for concurrent use.
type DiscoverPages struct {
	pages int
	got   map[int]DiscoverResult
}

// Add records one page, or a whole result (its only page), and reports
// whether every page has arrived. A failed result completes at once. A
// page that counts other pages than those before starts the collection
// over: the VMA began the discovery again.
func (a *DiscoverPages) Add(r DiscoverResult) bool {
	pages, page := max(r.Pages, 1), max(r.Page, 1)
	if r.Error != nil {
		pages, page = 1, 1
	}
	if a.got == nil || pages != a.pages {
		a.pages, a.got = pages, map[int]DiscoverResult{}
	}
	if page <= pages {
		a.got[page] = r
	}
	return a.Complete()
}

// Complete reports whether every page has arrived.
func (a *DiscoverPages) Complete() bool { return a.got != nil && len(a.got) == a.pages }

// Result returns the whole discovery, without page numbers: the first
// page's fields with the VMs of every page in page order, each VM once.
// It is meaningful once Complete.
func (a *DiscoverPages) Result() DiscoverResult {
	res := a.got[1]
	res.Page, res.Pages = 0, 0
	if res.Error != nil {
		return res
	}
	seen := map[string]bool{}
	res.VMs = []VM{}
	for p := 1; p <= a.pages; p++ {
		for _, vm := range a.got[p].VMs {
			if !seen[vm.ID] {
				seen[vm.ID] = true
				res.VMs = append(res.VMs, vm)
			}
		}
	}
	return res
}
