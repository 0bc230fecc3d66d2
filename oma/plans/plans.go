package plans

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/queue"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/schedule"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// DefaultMinSyncInterval is the shortest interval a schedule may have
// when Config.MinSyncInterval is zero.
const DefaultMinSyncInterval = time.Minute

// DefaultMaxActive is how many jobs of one plan run at once when
// Config.MaxActive is zero.
const DefaultMaxActive = queue.DefaultPlanMax

// MaxFailures is how many failed syncs in a row pause a VM.
const MaxFailures = 3

// Config configures a Manager. The zero value works.
type Config struct {
	// MinSyncInterval is the shortest interval a plan's schedule may have
	// (the OMA's -min-sync-interval); 0 means DefaultMinSyncInterval.
	MinSyncInterval time.Duration
	// MaxActive is how many jobs of one plan run at once; 0 means
	// DefaultMaxActive.
	MaxActive int
	// Poll is how often Run ticks; 0 means a second.
	Poll time.Duration
	// DataDir holds the volumes; preflight checks the room there.
	DataDir string
	// VirtioWin is where the virtio-win drivers are (VIRTIO_WIN), for the
	// preflight of Windows guests.
	VirtioWin string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Jobs is what plans ask of the jobs; *jobs.Manager satisfies it.
type Jobs interface {
	CreateJob(ctx context.Context, req jobs.CreateRequest) (store.Job, error)
	Start(ctx context.Context, id string, cred vmas.VCenterCredentials, opts jobs.StartOptions) (store.Job, error)
	Cancel(ctx context.Context, id string) (store.Job, error)
	Pause(ctx context.Context, id, reason string) (store.Job, error)
	Resume(ctx context.Context, id string) (store.Job, error)
}

// VCenters is what plans ask of the registered vCenters;
// *vcenters.Registry satisfies it.
type VCenters interface {
	Get(name string) (vcenters.View, error)
	Password(name string) (secret.String, error)
}

// Inventory is what plans ask of the inventory and the VMAs;
// *control.Control satisfies it.
type Inventory interface {
	Inventory() ([]inventory.VM, error)
	Discover(ctx context.Context, req inventory.DiscoverRequest) (events.DiscoverResult, error)
	Connected() ([]string, error)
}

// Kicker publishes what a transaction wrote to the outbox;
// *outbox.Outbox satisfies it.
type Kicker interface{ Kick() }

var (
	_ Jobs     = (*jobs.Manager)(nil)
	_ VCenters = (*vcenters.Registry)(nil)
)

// Manager keeps the plans and runs their schedules. It is safe for
// concurrent use.
type Manager struct {
	cfg      Config
	store    *store.Store
	jobs     Jobs
	vcenters VCenters
	inv      Inventory
	outbox   Kicker
	log      *slog.Logger

	// mu serializes changes to plans: the API's and the ticks'.
	mu sync.Mutex
	// started is when the Manager was made: a due time before it was
	// missed while the OMA was down.
	started time.Time
	kick    chan struct{}
}

// New returns a Manager of the plans in st.
func New(cfg Config, st *store.Store, j Jobs, vcs VCenters, inv Inventory, out Kicker) *Manager {
	if cfg.MinSyncInterval == 0 {
		cfg.MinSyncInterval = DefaultMinSyncInterval
	}
	if cfg.MaxActive == 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, store: st, jobs: j, vcenters: vcs, inv: inv, outbox: out, log: log,
		started: cfg.Now(), kick: make(chan struct{}, 1)}
}

// Spec is a plan as POST /api/v1/plans gives it.
type Spec struct {
	Name    string
	VCenter string
	// VMs name the VMs by path or managed object id.
	VMs []string
	// Waves, optional, list VMs (as named in VMs) wave by wave; VMs in
	// no wave come in a last wave of their own.
	Waves      [][]string
	Sync       events.PlanSchedule
	Verify     *bool
	OnCBTReset string
	// Limits bound its jobs: MaxConcurrent at once (0: Config.MaxActive),
	// and, when set, at most ESXiHost and Datastore jobs reading from one
	// ESXi host or datastore while one of its jobs does.
	Limits store.PlanLimits
	// Priority orders its jobs in the OMA's queue: higher first.
	Priority int
	// Cutover holds its settings for its VMs' cutovers.
	Cutover store.PlanCutover
	// Force lets the plan copy while its preflight finds errors.
	Force bool
	// Token names who creates it.
	Token string
}

// parseSchedule checks a plan's schedule, naming the field at fault.
func (m *Manager) parseSchedule(s events.PlanSchedule) (*schedule.Schedule, error) {
	spec := schedule.Spec{Interval: s.Interval, Cron: s.Cron}
	if s.Window != nil {
		spec.Window = &schedule.Window{Start: s.Window.Start, End: s.Window.End, TZ: s.Window.TZ}
	}
	sched, err := schedule.Parse(spec, m.cfg.MinSyncInterval)
	var fe *schedule.FieldError
	if errors.As(err, &fe) {
		return nil, fault.Errorf(fault.Invalid, fe.Field, "%s", fe.Msg)
	}
	if err != nil {
		return nil, fault.Errorf(fault.Invalid, "sync", "%v", err)
	}
	return sched, nil
}

// checkName checks a plan's name: it is a NATS subject token of events.
func checkName(name string) error {
	if err := subject.ValidID(name); err != nil || len(name) > 64 {
		return fault.Errorf(fault.Invalid, "name", "name %q: use 1 to 64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// Create checks s, resolves its VMs against the inventory (discovering
// through the vCenter's VMAs when one is missing), stores the plan and
// runs its preflight. A plan whose preflight finds an error does not copy
// until the error is gone, unless s.Force. Nothing is stored when s is
// refused.
func (m *Manager) Create(ctx context.Context, s Spec) (View, error) {
	if err := checkName(s.Name); err != nil {
		return View{}, err
	}
	if s.VCenter == "" {
		return View{}, fault.Errorf(fault.Invalid, "vcenter", "vcenter is required: the name of a registered vCenter (POST /api/v1/vcenters)")
	}
	if len(s.VMs) == 0 {
		return View{}, fault.Errorf(fault.Invalid, "vms", "vms is empty: name at least one VM by path or id")
	}
	if err := checkOnCBTReset(s.OnCBTReset); err != nil {
		return View{}, err
	}
	if err := checkLimits(s.Limits); err != nil {
		return View{}, err
	}
	if err := checkPriority(s.Priority); err != nil {
		return View{}, err
	}
	if err := checkCutover(s.Cutover); err != nil {
		return View{}, err
	}
	sched, err := m.parseSchedule(s.Sync)
	if err != nil {
		return View{}, err
	}
	vc, err := m.vcenters.Get(s.VCenter)
	if fault.KindOf(err) == fault.NotFound {
		return View{}, fault.Errorf(fault.Invalid, "vcenter", "no vCenter named %q is registered (GET /api/v1/vcenters lists them)", s.VCenter)
	}
	if err != nil {
		return View{}, err
	}
	found, err := m.resolve(ctx, vc, s.VMs, "vms")
	if err != nil {
		return View{}, err
	}
	waveOf, err := waves(s.VMs, found, s.Waves)
	if err != nil {
		return View{}, err
	}
	now := m.cfg.Now().UTC()
	p := store.Plan{Name: s.Name, VCenter: s.VCenter, Sync: s.Sync, Verify: s.Verify, OnCBTReset: s.OnCBTReset,
		Limits: s.Limits, Priority: s.Priority, Force: s.Force, Cutover: s.Cutover, NextDue: sched.Next(now), CreatedBy: s.Token, CreatedAt: now, UpdatedAt: now}
	var vms []store.PlanVM
	for i, f := range found {
		vms = append(vms, planVM(s.Name, f, waveOf[i], now))
	}
	p.Waves = waveLists(vms)

	m.mu.Lock()
	err = m.store.Update(func(tx *bbolt.Tx) error {
		if _, err := store.GetPlan(tx, s.Name); err == nil {
			return fault.Errorf(fault.Conflict, "name", "a plan named %q exists already", s.Name)
		}
		if err := inOtherPlan(tx, s.Name, vms, "vms"); err != nil {
			return err
		}
		if err := store.PutPlan(tx, p); err != nil {
			return err
		}
		created := &events.PlanCreated{Plan: p.Name, VCenter: p.VCenter, Sync: p.Sync, NextDue: p.NextDue, CreatedAt: now}
		for _, vm := range vms {
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
			created.VMs = append(created.VMs, vmRef(vm))
		}
		return m.emit(tx, created)
	})
	m.mu.Unlock()
	if err != nil {
		return View{}, err
	}
	m.log.Info("plan created", "plan", p.Name, "vcenter", p.VCenter, "vms", len(vms), "schedule", sched.String(), "next_due", p.NextDue)
	m.outbox.Kick()
	report, err := m.Preflight(ctx, s.Name)
	if err != nil {
		return View{}, fmt.Errorf("plan %s created; its preflight failed (GET /api/v1/plans/%s/preflight runs it again): %w", s.Name, s.Name, err)
	}
	v, err := m.Get(ctx, s.Name)
	v.Preflight = &report
	return v, err
}

// located is a VM of the inventory a plan names.
type located struct {
	vm    events.VM
	vmaID string
	host  string
}

// resolve finds each named VM (path or id) among the VMs the vCenter's
// VMAs discovered in it. When some are missing it discovers once through
// the first connected VMA of the vCenter, then looks again. field names
// the list in errors (vms[3]).
func (m *Manager) resolve(ctx context.Context, vc vcenters.View, names []string, field string) ([]located, error) {
	lookup := func() ([]located, int, error) {
		inv, err := m.inv.Inventory()
		if err != nil {
			return nil, 0, err
		}
		out := make([]located, len(names))
		for i, n := range names {
			for _, v := range inv {
				if v.VCenter != vc.Host || !slices.Contains(vc.VMAs, v.VMAID) || (v.ID != n && v.Path != n) {
					continue
				}
				if out[i].vmaID == "" || v.VMAID < out[i].vmaID {
					out[i] = located{vm: v.VM, vmaID: v.VMAID, host: v.VCenter}
				}
			}
			if out[i].vmaID == "" {
				return out, i, nil
			}
		}
		return out, -1, nil
	}
	seen := map[string]int{}
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			return nil, fault.Errorf(fault.Invalid, fmt.Sprintf("%s[%d]", field, i), "%s[%d] is empty: name a VM by path or id", field, i)
		}
		if j, ok := seen[n]; ok {
			return nil, fault.Errorf(fault.Invalid, fmt.Sprintf("%s[%d]", field, i), "%s[%d] %q is %s[%d] again", field, i, n, field, j)
		}
		seen[n] = i
	}
	out, missing, err := lookup()
	if err != nil || missing < 0 {
		return out, err
	}
	if err := m.discover(ctx, vc, ""); err != nil {
		return nil, fmt.Errorf("%s[%d] %q is not in the inventory, and discovering %s failed: %w", field, missing, names[missing], vc.Name, err)
	}
	if out, missing, err = lookup(); err != nil || missing < 0 {
		return out, err
	}
	return nil, fault.Errorf(fault.Invalid, fmt.Sprintf("%s[%d]", field, missing),
		"no VM with path or id %q in vCenter %s (%s) as its VMAs (%s) discovered it", names[missing], vc.Name, vc.Host, strings.Join(vc.VMAs, ", "))
}

// discover runs a discovery of vc through the first of its VMAs that is
// connected, with filter (empty: every VM).
func (m *Manager) discover(ctx context.Context, vc vcenters.View, filter string) error {
	vma, err := m.connectedVMA(vc)
	if err != nil {
		return err
	}
	return m.discoverWith(ctx, vc, vma, filter)
}

func (m *Manager) discoverWith(ctx context.Context, vc vcenters.View, vma, filter string) error {
	pw, err := m.vcenters.Password(vc.Name)
	if err != nil {
		return err
	}
	dc := ""
	if len(vc.Datacenters) == 1 {
		dc = vc.Datacenters[0]
	}
	_, err = m.inv.Discover(ctx, inventory.DiscoverRequest{VMAID: vma, Datacenter: dc, Filter: filter,
		Cred: vmas.VCenterCredentials{VCenter: vc.Host, Username: vc.Username, Password: pw, CAPEM: vc.CAPEM, Thumbprint: vc.Thumbprint}})
	return err
}

// connectedVMA returns the first connected VMA vc allows.
func (m *Manager) connectedVMA(vc vcenters.View) (string, error) {
	connected, err := m.inv.Connected()
	if err != nil {
		return "", err
	}
	for _, id := range vc.VMAs {
		if slices.Contains(connected, id) {
			return id, nil
		}
	}
	return "", fault.Errorf(fault.Unavailable, "vcenter", "none of the VMAs of vCenter %s (%s) is connected", vc.Name, strings.Join(vc.VMAs, ", "))
}

// waves returns the wave of each VM: the index of the wave that names it,
// or one past the last wave for a VM no wave names.
func waves(names []string, found []located, given [][]string) ([]int, error) {
	index := map[string]int{}
	for i, f := range found {
		index[names[i]], index[f.vm.ID], index[f.vm.Path] = i, i, i
	}
	out := make([]int, len(found))
	for i := range out {
		out[i] = -1
	}
	for w, wave := range given {
		if len(wave) == 0 {
			return nil, fault.Errorf(fault.Invalid, fmt.Sprintf("waves[%d]", w), "waves[%d] is empty", w)
		}
		for j, n := range wave {
			i, ok := index[n]
			field := fmt.Sprintf("waves[%d][%d]", w, j)
			if !ok {
				return nil, fault.Errorf(fault.Invalid, field, "%s %q is not a VM of the plan (name it in vms too)", field, n)
			}
			if out[i] >= 0 {
				return nil, fault.Errorf(fault.Invalid, field, "%s %q is in waves[%d] already", field, n, out[i])
			}
			out[i] = w
		}
	}
	for i := range out {
		if out[i] < 0 {
			out[i] = len(given)
		}
	}
	return out, nil
}

// waveLists lists the keys of vms wave by wave, dropping empty waves.
func waveLists(vms []store.PlanVM) [][]string {
	byWave := map[int][]string{}
	for _, vm := range vms {
		byWave[vm.Wave] = append(byWave[vm.Wave], vm.Key)
	}
	var out [][]string
	for _, w := range slices.Sorted(mapsKeys(byWave)) {
		out = append(out, byWave[w])
	}
	return out
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func planVM(plan string, f located, wave int, now time.Time) store.PlanVM {
	return store.PlanVM{Plan: plan, Key: f.vm.ID, Name: f.vm.Name, Path: f.vm.Path, InstanceUUID: f.vm.InstanceUUID,
		VMAID: f.vmaID, Host: f.host, ReplicaID: replicas.ID(f.vmaID, f.host, f.vm), Wave: wave, State: events.PlanVMPending, UpdatedAt: now}
}

func vmRef(vm store.PlanVM) events.PlanVMRef {
	return events.PlanVMRef{ID: vm.Key, Name: vm.Name, Path: vm.Path, InstanceUUID: vm.InstanceUUID, Wave: vm.Wave}
}

// sameVM reports whether a and b are the same source VM.
func sameVM(a, b store.PlanVM) bool {
	if a.InstanceUUID != "" && b.InstanceUUID != "" && a.Host == b.Host {
		return a.InstanceUUID == b.InstanceUUID
	}
	return a.Host == b.Host && a.Key == b.Key
}

// inOtherPlan refuses VMs that another plan has (a Conflict naming
// field[i]), or that are named twice.
func inOtherPlan(tx *bbolt.Tx, plan string, vms []store.PlanVM, field string) error {
	all, err := store.AllPlanVMs(tx)
	if err != nil {
		return err
	}
	for i, vm := range vms {
		for _, other := range all {
			if other.Plan != plan && sameVM(vm, other) {
				return fault.Errorf(fault.Conflict, fmt.Sprintf("%s[%d]", field, i), "VM %s (%s) is in plan %q already: a VM may be in one plan only", vm.Key, vm.Path, other.Plan)
			}
		}
		for j := range i {
			if sameVM(vm, vms[j]) {
				return fault.Errorf(fault.Invalid, fmt.Sprintf("%s[%d]", field, i), "%s[%d] names VM %s again (%s[%d])", field, i, vm.Key, field, j)
			}
		}
	}
	return nil
}

// MaxConcurrentLimit is the most jobs of a plan limits.max_concurrent may
// allow at once.
const MaxConcurrentLimit = 1000

// checkLimits checks a plan's limits, naming the field at fault.
func checkLimits(l store.PlanLimits) error {
	if l.MaxConcurrent < 0 || l.MaxConcurrent > MaxConcurrentLimit {
		return fault.Errorf(fault.Invalid, "limits.max_concurrent", "limits.max_concurrent %d: want 1 to %d jobs at once (0 or absent: the OMA's default, %d)",
			l.MaxConcurrent, MaxConcurrentLimit, DefaultMaxActive)
	}
	return vcenters.CheckLimits("limits", store.SourceLimits{ESXiHost: l.ESXiHost, Datastore: l.Datastore})
}

// Bounds of a plan's priority.
const (
	MinPriority = -1000
	MaxPriority = 1000
)

// checkCutover checks a plan's cutover settings, naming the field at fault.
func checkCutover(c store.PlanCutover) error {
	if c.TargetDir != "" && !filepath.IsAbs(c.TargetDir) {
		return fault.Errorf(fault.Invalid, "cutover.target_dir", "cutover.target_dir must be an absolute path, not %q", c.TargetDir)
	}
	if _, err := regexp.Compile(c.BootPrompt); err != nil {
		return fault.Errorf(fault.Invalid, "cutover.boot_prompt", "cutover.boot_prompt is not a regular expression: %v", err)
	}
	return nil
}

// checkPriority checks a plan's priority.
func checkPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return fault.Errorf(fault.Invalid, "priority", "priority %d: want %d to %d (higher goes first in the OMA's queue, 0 by default)", p, MinPriority, MaxPriority)
	}
	return nil
}

// maxActive is how many jobs of p run at once.
func (m *Manager) maxActive(p store.Plan) int {
	if p.Limits.MaxConcurrent > 0 {
		return p.Limits.MaxConcurrent
	}
	return m.cfg.MaxActive
}

// checkOnCBTReset checks the on_cbt_reset field of a plan.
func checkOnCBTReset(v string) error {
	switch v {
	case "", events.OnCBTResetFail, events.OnCBTResetFull:
		return nil
	}
	return fault.Errorf(fault.Invalid, "on_cbt_reset", "on_cbt_reset must be %q or %q, not %q", events.OnCBTResetFail, events.OnCBTResetFull, v)
}

// emit writes p to the outbox inside tx.
func (m *Manager) emit(tx *bbolt.Tx, p events.Payload) error {
	ev, err := events.New("/godwit/oma", p, m.cfg.Now())
	if err != nil {
		return err
	}
	return store.Enqueue(tx, ev)
}

// Kick makes Run tick soon.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// notFound turns the store's ErrNotFound into a NotFound fault.
func notFound(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fault.Errorf(fault.NotFound, "name", "no plan named %q", name)
	}
	return err
}

// UsesVCenter says whether a plan uses the vCenter named name, for
// vcenters.Registry.Delete.
func UsesVCenter(tx *bbolt.Tx, name string) (string, bool) {
	ps, err := store.Plans(tx)
	if err != nil {
		return "the plans (unreadable: " + err.Error() + ")", true
	}
	for _, p := range ps {
		if p.VCenter == name {
			return fmt.Sprintf("plan %q", p.Name), true
		}
	}
	return "", false
}
