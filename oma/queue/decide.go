package queue

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/godwit/godwit/oma/schedule"
	"github.com/godwit/godwit/oma/store"
)

// vmaSlots is what a VMA may take: its capacity, or why it takes nothing.
type vmaSlots struct {
	capacity int
	// down says why the VMA takes no job ("" when it is connected).
	down string
}

// planRules are what a plan adds to its jobs: a bound on how many run,
// tighter source limits, a priority.
type planRules struct {
	limits   store.PlanLimits
	priority int
}

// rules are every limit that applies in one pass.
type rules struct {
	vmas     map[string]vmaSlots
	vcenters map[string]store.SourceLimits // by vCenter host, zero fields filled with the defaults
	plans    map[string]planRules
	defaults store.SourceLimits
	// planMax is a plan's MaxConcurrent when it sets none.
	planMax int
	// The bandwidth limits, bytes per second (0: none): of every job
	// together, of a VMA's, of a plan's.
	globalRate int64
	vmaRates   map[string]int64
	planRates  map[string]int64
}

// rates returns each running job's bandwidth limit: the lowest of its own
// and of its share of each limit over several jobs (its plan's, its VMA's,
// the global one), shared evenly between the jobs under it; 0 where none
// applies.
func (r *rules) rates(running []*store.QueueEntry) map[string]int64 {
	perVMA, perPlan := map[string]int64{}, map[string]int64{}
	for _, e := range running {
		perVMA[e.VMAID]++
		if e.Plan != "" {
			perPlan[e.Plan]++
		}
	}
	out := make(map[string]int64, len(running))
	for _, e := range running {
		lim := int64(0)
		share := func(total, n int64) {
			if total > 0 {
				if s := max(total/max(n, 1), 1); lim == 0 || s < lim {
					lim = s
				}
			}
		}
		share(e.RateLimit, 1)
		if e.Plan != "" {
			share(r.planRates[e.Plan], perPlan[e.Plan])
		}
		share(r.vmaRates[e.VMAID], perVMA[e.VMAID])
		share(r.globalRate, int64(len(running)))
		out[e.JobID] = lim
	}
	return out
}

// source returns the limits of the vCenter at host for a job of plan.
func (r *rules) source(host, plan string) store.SourceLimits {
	l, ok := r.vcenters[host]
	if !ok {
		l = r.defaults
	}
	if p, ok := r.plans[plan]; ok {
		if p.limits.ESXiHost > 0 {
			l.ESXiHost = min(l.ESXiHost, p.limits.ESXiHost)
		}
		if p.limits.Datastore > 0 {
			l.Datastore = min(l.Datastore, p.limits.Datastore)
		}
	}
	return l
}

// priority is the priority of e: its plan's, else its own.
func (r *rules) priority(e *store.QueueEntry) int {
	if p, ok := r.plans[e.Plan]; ok && e.Plan != "" {
		return p.priority
	}
	return e.Priority
}

// counts counts the jobs running under each limit: per VMA, vCenter, ESXi
// host, datastore, plan, and per turn (plan and kind).
type counts map[string]int

func vmaKey(id string) string        { return "vma\x00" + id }
func vcenterKey(host string) string  { return "vc\x00" + host }
func hostKey(vc, host string) string { return "host\x00" + vc + "\x00" + host }
func dsKey(vc, ds string) string     { return "ds\x00" + vc + "\x00" + ds }
func planKey(plan string) string     { return "plan\x00" + plan }
func turnKey(e *store.QueueEntry) string {
	return "turn\x00" + e.Plan + "\x00" + e.ReplicationType
}

// add counts e as running (n = 1) or no longer (n = -1).
func (c counts) add(e *store.QueueEntry, n int) {
	c[vmaKey(e.VMAID)] += n
	c[vcenterKey(e.VCenter)] += n
	if e.ESXiHost != "" {
		c[hostKey(e.VCenter, e.ESXiHost)] += n
	}
	for _, ds := range e.Datastores {
		c[dsKey(e.VCenter, ds)] += n
	}
	if e.Plan != "" {
		c[planKey(e.Plan)] += n
	}
	c[turnKey(e)] += n
}

// limitHit names the limit that keeps a job waiting: what it bounds
// ("vma", "vcenter", "esxi host", "datastore", "plan"), which one, and how
// many of how many run. A VMA that takes no job says why in down.
type limitHit struct {
	what, name string
	n, limit   int
	down       string
}

// String is the hit as a job's waiting_for says it.
func (h limitHit) String() string {
	if h.down != "" {
		return fmt.Sprintf("%s %s: %s", h.what, h.name, h.down)
	}
	return fmt.Sprintf("%s %s: %d of %d running", h.what, h.name, h.n, h.limit)
}

// blocked says which limit keeps e from running now, false when none
// does: the first full one of its VMA, vCenter, ESXi host, datastores and
// plan.
func (r *rules) blocked(c counts, e *store.QueueEntry) (limitHit, bool) {
	v, ok := r.vmas[e.VMAID]
	switch {
	case !ok:
		return limitHit{what: "vma", name: e.VMAID, down: "not registered"}, true
	case v.down != "":
		return limitHit{what: "vma", name: e.VMAID, down: v.down}, true
	case c[vmaKey(e.VMAID)] >= v.capacity:
		return limitHit{"vma", e.VMAID, c[vmaKey(e.VMAID)], v.capacity, ""}, true
	}
	l := r.source(e.VCenter, e.Plan)
	if n := c[vcenterKey(e.VCenter)]; n >= l.VCenter {
		return limitHit{"vcenter", e.VCenter, n, l.VCenter, ""}, true
	}
	if e.ESXiHost != "" {
		if n := c[hostKey(e.VCenter, e.ESXiHost)]; n >= l.ESXiHost {
			return limitHit{"esxi host", e.ESXiHost, n, l.ESXiHost, ""}, true
		}
	}
	for _, ds := range e.Datastores {
		if n := c[dsKey(e.VCenter, ds)]; n >= l.Datastore {
			return limitHit{"datastore", ds, n, l.Datastore, ""}, true
		}
	}
	if e.Plan != "" {
		max := r.planMax
		if p, ok := r.plans[e.Plan]; ok && p.limits.MaxConcurrent > 0 {
			max = p.limits.MaxConcurrent
		}
		if n := c[planKey(e.Plan)]; n >= max {
			return limitHit{"plan", e.Plan, n, max, ""}, true
		}
	}
	return limitHit{}, false
}

// Decision is what one pass decided for a waiting job.
type Decision struct {
	// Position is the job's place in the queue's order, from 1.
	Position int
	// WaitingFor names the limit that keeps it waiting; "" when it is
	// dispatched.
	WaitingFor string
}

// decide orders the waiting jobs and picks those that run now under
// every limit, given the running ones. The order: higher priority first;
// among equal priorities, turns take each a job in rotation, a turn being
// a plan's initial copies, a plan's incrementals, or the jobs of no plan
// of one kind: the turn with the fewest jobs running goes first, ties to
// its oldest job. So plans share the slots, and a plan's incrementals keep
// half its slots while its initial copies wait, and the other way round.
// decide returns the dispatched jobs in order and the decisions of the
// waiting jobs it went through: every one when full, else only as far as
// a VMA has a free slot (the rest cannot run before a slot frees).
func decide(waiting, running []*store.QueueEntry, r *rules, full bool) ([]*store.QueueEntry, map[string]Decision) {
	c := counts{}
	for _, e := range running {
		c.add(e, 1)
	}
	free := 0 // free slots over the VMAs that take jobs
	for id, v := range r.vmas {
		if v.down == "" {
			free += max(0, v.capacity-c[vmaKey(id)])
		}
	}
	// The turns, each oldest first.
	type turn struct {
		key   string
		prio  int
		queue []*store.QueueEntry
	}
	type turnID struct {
		plan, kind string
		prio       int
	}
	byKey := map[turnID]*turn{}
	var turns []*turn
	if !slices.IsSortedFunc(waiting, byAge) { // the queue keeps them so
		waiting = slices.Clone(waiting)
		slices.SortFunc(waiting, byAge)
	}
	for _, e := range waiting { // each turn oldest first, as waiting is
		p := r.priority(e)
		id := turnID{e.Plan, e.ReplicationType, p}
		t, ok := byKey[id]
		if !ok {
			t = &turn{key: turnKey(e), prio: p}
			byKey[id] = t
			turns = append(turns, t)
		}
		t.queue = append(t.queue, e)
	}
	var out []*store.QueueEntry
	decisions := make(map[string]Decision, min(len(waiting), 256))
	texts := map[limitHit]string{}
	for pos := 1; ; pos++ {
		var next *turn
		for _, t := range turns {
			if len(t.queue) == 0 {
				continue
			}
			if next == nil || before(t.prio, c[t.key], t.queue[0].QueuedAt, next.prio, c[next.key], next.queue[0].QueuedAt) {
				next = t
			}
		}
		if next == nil || free == 0 && !full {
			return out, decisions
		}
		e := next.queue[0]
		next.queue = next.queue[1:]
		why := ""
		if hit, ok := r.blocked(c, e); ok {
			// Many jobs wait for the same few limits: each text is
			// made once.
			if why, ok = texts[hit]; !ok {
				why = hit.String()
				texts[hit] = why
			}
		}
		decisions[e.JobID] = Decision{Position: pos, WaitingFor: why}
		if why == "" {
			c.add(e, 1)
			out = append(out, e)
			free--
		} else {
			// A job that waits does not hold its turn's place: the turn
			// goes on as if it ran, so that one blocked job (its host
			// full) does not put its turn first again and again.
			c[next.key]++
		}
	}
}

// byAge orders waiting entries oldest first, then by job id.
func byAge(a, b *store.QueueEntry) int {
	return cmp.Or(a.QueuedAt.Compare(b.QueuedAt), cmp.Compare(a.JobID, b.JobID))
}

// before reports whether a turn (priority, jobs running, oldest job) goes
// before another.
func before(prio, running int, oldest time.Time, prio2, running2 int, oldest2 time.Time) bool {
	if prio != prio2 {
		return prio > prio2
	}
	if running != running2 {
		return running < running2
	}
	return oldest.Before(oldest2)
}

// RateAt is the limit of base and its windows at now: the rate of the
// first window now falls in, else base. A window that does not parse
// (none is stored so) is skipped.
func RateAt(base int64, ws []store.RateWindow, now time.Time) int64 {
	for _, w := range ws {
		if in, err := schedule.Within(schedule.Window{Start: w.Start, End: w.End, TZ: w.TZ}, now, ""); err == nil && in {
			return w.Rate
		}
	}
	return base
}
