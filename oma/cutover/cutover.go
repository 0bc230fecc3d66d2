// Package cutover ends a VM's migration: it powers the source off, runs a
// last incremental sync, converts the guest for KVM on qcow2 overlays of
// the replica (never the replica itself), writes the disks and a domain
// for the target cloud, boots them in an isolated qemu until the console
// shows a login prompt, and measures the downtime against its prediction.
// Rollback powers the source back on and discards the converted copy;
// commit ends the VM's migration. The source is never deleted.
//
// Each cutover is a state machine kept in the store (store.Cutover): Run
// drives every cutover that is not at rest, and an OMA restarted mid-step
// goes on from the step it was in (a conversion, export or boot check
// starts again, on new overlays).
package cutover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/vcenters"
	"github.com/godwit/godwit/oma/vmas"
	"github.com/godwit/godwit/secret"
)

// Defaults of a cutover request.
const (
	DefaultShutdownTimeout = 300 // seconds
	DefaultMaxPasses       = 10
	// FinalPriority orders a cutover's syncs before every other job in
	// the OMA's queue: the source is down while they wait.
	FinalPriority = 1 << 20
)

// Config configures a Manager. DataDir is required.
type Config struct {
	// DataDir holds the replicas; a cutover's overlays, logs and console
	// go in <DataDir>/cutovers/<replica>/a<attempt>.
	DataDir string
	// TargetDir is where converted disks go when a request names no
	// target_dir: <TargetDir>/<vm name>-<vm id>. "" means <DataDir>/target.
	TargetDir string
	// QemuImg, Qemu and VirtV2V are the programs; "" means qemu-img,
	// qemu-system-x86_64 and virt-v2v-in-place on PATH.
	QemuImg, Qemu, VirtV2V string
	// Accel is how guests run here: kvm or tcg. "" means probed once (a
	// real tiny boot under KVM, bootcheck.ProbeKVM), falling back to tcg.
	Accel string
	// VirtioWin is where the virtio-win drivers are (VIRTIO_WIN): without
	// it a Windows guest's conversion is refused.
	VirtioWin string
	// BootTimeout bounds a boot check; 0 means bootcheck's default for
	// the accelerator.
	BootTimeout time.Duration
	// Poll is how often a waiting step looks again; 0 means 500ms.
	Poll time.Duration
	// PowerSlack is how much longer than its shutdown timeout a power
	// command may take to be reported; 0 means 2 minutes.
	PowerSlack time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// Jobs is what a cutover asks of the jobs; *jobs.Manager satisfies it.
type Jobs interface {
	CreateJob(ctx context.Context, req jobs.CreateRequest) (store.Job, error)
	Start(ctx context.Context, id string, cred vmas.VCenterCredentials, opts jobs.StartOptions) (store.Job, error)
}

// VCenters finds a registered vCenter's credentials; *vcenters.Registry
// satisfies it.
type VCenters interface {
	List() ([]vcenters.View, error)
	Password(name string) (secret.String, error)
}

// Sealer seals a password to a VMA; *vmas.Registry satisfies it.
type Sealer interface {
	Seal(vmaID string, s secret.String) (events.Sealed, error)
}

// Kicker publishes what a transaction wrote to the outbox.
type Kicker interface{ Kick() }

var (
	_ Jobs     = (*jobs.Manager)(nil)
	_ VCenters = (*vcenters.Registry)(nil)
	_ Sealer   = (*vmas.Registry)(nil)
)

// Manager runs the cutovers. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	store    *store.Store
	jobs     Jobs
	vcenters VCenters
	sealer   Sealer
	outbox   Kicker
	log      *slog.Logger

	mu      sync.Mutex
	driving map[string]bool // cutovers whose driver runs, by key
	again   map[string]bool // cutovers whose driver must look again
	cancels map[string]context.CancelFunc
	wg      sync.WaitGroup
	runCtx  context.Context
	stopped bool // Run has ended
	kick    chan struct{}
	// heavy runs one conversion or boot check at a time: under TCG each
	// takes a core, and two would double each other's downtime.
	heavy chan struct{}
	accel func() string
}

// New returns a Manager of the cutovers in st.
func New(cfg Config, st *store.Store, j Jobs, vcs VCenters, sealer Sealer, out Kicker) *Manager {
	if cfg.TargetDir == "" {
		cfg.TargetDir = filepath.Join(cfg.DataDir, "target")
	}
	if cfg.QemuImg == "" {
		cfg.QemuImg = "qemu-img"
	}
	if cfg.Qemu == "" {
		cfg.Qemu = "qemu-system-x86_64"
	}
	if cfg.Poll == 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.PowerSlack == 0 {
		cfg.PowerSlack = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, store: st, jobs: j, vcenters: vcs, sealer: sealer, outbox: out, log: log,
		driving: map[string]bool{}, again: map[string]bool{}, cancels: map[string]context.CancelFunc{}, kick: make(chan struct{}, 1), heavy: make(chan struct{}, 1)}
	m.accel = sync.OnceValue(m.probeAccel)
	return m
}

// Request asks for the cutover of one VM.
type Request struct {
	// VM names the VM: by id, narrowed by VMA and vCenter when ambiguous.
	VM inventory.Ref
	// Plan, when set, is the plan the VM must be in.
	Plan string
	// When is now (""), at or budget.
	When string
	At   *time.Time
	// BudgetSeconds is the downtime a budget cutover must predict before
	// it powers the source off; MaxPasses bounds its syncs (0: DefaultMaxPasses).
	BudgetSeconds float64
	MaxPasses     int
	// PowerOff is guest, hard or guest-then-hard (""); ShutdownTimeout
	// bounds a guest shutdown in seconds (0: DefaultShutdownTimeout).
	PowerOff        string
	ShutdownTimeout int
	// Convert and BootCheck default to true.
	Convert   *bool
	BootCheck *bool
	// BootPrompt is a regular expression the boot check waits for; "": a
	// login prompt.
	BootPrompt string
	TargetDir  string
	// Format of the target disks: qcow2 ("") or raw.
	Format string
	Token  string
}

// options checks r and returns the options it asks for, naming the field
// at fault.
func (m *Manager) options(r Request, vm events.VM, pc store.PlanCutover) (store.CutoverOptions, error) {
	if r.BootPrompt == "" {
		r.BootPrompt = pc.BootPrompt
	}
	o := store.CutoverOptions{When: r.When, At: r.At, BudgetSeconds: r.BudgetSeconds, MaxPasses: r.MaxPasses,
		PowerOff: r.PowerOff, ShutdownTimeout: r.ShutdownTimeout, Convert: r.Convert == nil || *r.Convert,
		BootCheck: r.BootCheck == nil || *r.BootCheck, BootPrompt: r.BootPrompt, TargetDir: r.TargetDir, Format: r.Format}
	if o.When == "" {
		o.When = "now"
	}
	switch o.When {
	case "now":
	case "at":
		if o.At == nil {
			return o, fault.Errorf(fault.Invalid, "at", "when is at: give at, an RFC 3339 time")
		}
	case "budget":
		if o.BudgetSeconds <= 0 {
			return o, fault.Errorf(fault.Invalid, "downtime_budget_seconds", "when is budget: give downtime_budget_seconds, more than 0")
		}
	default:
		return o, fault.Errorf(fault.Invalid, "when", "when must be now, at or budget, not %q", o.When)
	}
	if o.When != "at" && o.At != nil {
		return o, fault.Errorf(fault.Invalid, "at", "at is only for when: at")
	}
	if o.MaxPasses == 0 {
		o.MaxPasses = DefaultMaxPasses
	}
	if o.MaxPasses < 1 || o.MaxPasses > 100 {
		return o, fault.Errorf(fault.Invalid, "max_passes", "max_passes must be 1 to 100, not %d", o.MaxPasses)
	}
	if o.PowerOff == "" {
		o.PowerOff = events.PowerOffGuestThenHard
	}
	if !slices.Contains([]string{events.PowerOffGuest, events.PowerOffHard, events.PowerOffGuestThenHard}, o.PowerOff) {
		return o, fault.Errorf(fault.Invalid, "power_off", "power_off must be guest, hard or guest-then-hard, not %q", o.PowerOff)
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.ShutdownTimeout < 1 || o.ShutdownTimeout > 86400 {
		return o, fault.Errorf(fault.Invalid, "shutdown_timeout_seconds", "shutdown_timeout_seconds must be 1 to 86400, not %d", o.ShutdownTimeout)
	}
	if o.BootPrompt != "" {
		if _, err := regexp.Compile(o.BootPrompt); err != nil {
			return o, fault.Errorf(fault.Invalid, "boot_prompt", "boot_prompt is not a regular expression: %v", err)
		}
	}
	if o.Format == "" {
		o.Format = "qcow2"
	}
	if o.Format != "qcow2" && o.Format != "raw" {
		return o, fault.Errorf(fault.Invalid, "format", "format must be qcow2 or raw, not %q", o.Format)
	}
	if o.TargetDir == "" {
		o.TargetRoot = pc.TargetDir
		if o.TargetRoot == "" {
			o.TargetRoot = m.cfg.TargetDir
		}
		o.TargetDir = filepath.Join(o.TargetRoot, safeName(vm.Name)+"-"+vm.ID)
	}
	if !filepath.IsAbs(o.TargetDir) {
		return o, fault.Errorf(fault.Invalid, "target_dir", "target_dir must be an absolute path, not %q", o.TargetDir)
	}
	if o.Convert && windows(vm) && m.cfg.VirtioWin == "" {
		return o, fault.Errorf(fault.Conflict, "convert", "VM %s runs Windows (%s): converting it needs the virtio-win drivers, which Debian does not package; set VIRTIO_WIN on the OMA to where they are, or cut over with convert false", vm.Name, vm.GuestOS)
	}
	return o, nil
}

// windows says whether vm's guest is Windows, as vCenter names it.
func windows(vm events.VM) bool { return strings.Contains(strings.ToLower(vm.GuestOS), "win") }

// safeName makes s a file name: letters, digits, '-', '_' and '.' only.
func safeName(s string) string {
	out := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
	if out == "" || out[0] == '.' {
		out = "_" + out
	}
	return out
}

// Start begins the cutover r asks for, or refuses it (naming the field),
// changing nothing. A VM whose last cutover failed is cut over again
// from where it stopped: the source stays off and the final sync is kept,
// so only the conversion and boot check run again, on new overlays.
func (m *Manager) Start(ctx context.Context, r Request) (store.Cutover, error) {
	var c store.Cutover
	err := m.store.Update(func(tx *bbolt.Tx) error {
		var err error
		c, err = m.startIn(tx, r)
		return err
	})
	m.outbox.Kick()
	if err != nil {
		return store.Cutover{}, err
	}
	m.log.Info("cutover started", "cutover", c.ID, "vm", c.VM.ID, "state", c.State, "when", c.Options.When)
	m.drive(c.Key)
	return c, nil
}

// StartPlan starts the cutovers of plan's VMs (those named in vms, by id,
// or all), each as r asks, in one transaction: when one is refused, none
// starts.
func (m *Manager) StartPlan(ctx context.Context, plan string, vms []string, r Request) ([]store.Cutover, error) {
	var out []store.Cutover
	err := m.store.Update(func(tx *bbolt.Tx) error {
		if _, err := store.GetPlan(tx, plan); errors.Is(err, store.ErrNotFound) {
			return fault.Errorf(fault.NotFound, "name", "no plan named %q", plan)
		} else if err != nil {
			return err
		}
		all, err := store.PlanVMs(tx, plan)
		if err != nil {
			return err
		}
		for i, id := range vms {
			if !slices.ContainsFunc(all, func(vm store.PlanVM) bool { return vm.Key == id }) {
				return fault.Errorf(fault.NotFound, fmt.Sprintf("vms[%d]", i), "VM %s is not in plan %s", id, plan)
			}
		}
		for _, vm := range all {
			if len(vms) > 0 && !slices.Contains(vms, vm.Key) {
				continue
			}
			vr := r
			vr.Plan, vr.VM = plan, inventory.Ref{VMID: vm.Key, VMAID: vm.VMAID, VCenter: vm.Host}
			c, err := m.startIn(tx, vr)
			if err != nil {
				return fmt.Errorf("VM %s: %w", vm.Key, err)
			}
			out = append(out, c)
		}
		return nil
	})
	m.outbox.Kick()
	if err != nil {
		return nil, err
	}
	for _, c := range out {
		m.log.Info("cutover started", "cutover", c.ID, "vm", c.VM.ID, "plan", plan, "state", c.State, "when", c.Options.When)
		m.drive(c.Key)
	}
	return out, nil
}

// startIn is Start inside tx.
func (m *Manager) startIn(tx *bbolt.Tx, r Request) (store.Cutover, error) {
	var c store.Cutover
	err := func() error {
		loc, err := inventory.Find(tx, r.VM)
		if err != nil {
			return err
		}
		key := replicas.ID(loc.VMAID, loc.VCenter, loc.VM)
		pvm, plan, err := planVMOf(tx, key)
		if err != nil {
			return err
		}
		var pc store.PlanCutover
		if plan != "" {
			p, err := store.GetPlan(tx, plan)
			if err != nil {
				return err
			}
			pc = p.Cutover
		}
		o, err := m.options(r, loc.VM, pc)
		if err != nil {
			return err
		}
		if r.Plan != "" && plan != r.Plan {
			return fault.Errorf(fault.NotFound, "vms", "VM %s is not in plan %s", loc.VM.ID, r.Plan)
		}
		prev, err := store.GetCutover(tx, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case prev.State == events.CutoverFailed && prev.FinalJob != "" && prev.PoweredOffAt != nil:
			// The source is off and the replica current: retry the conversion.
			prev.Options.Convert, prev.Options.BootCheck, prev.Options.BootPrompt = o.Convert, o.BootCheck, o.BootPrompt
			prev.Options.TargetDir, prev.Options.Format = o.TargetDir, o.Format
			prev.Error, prev.FailedStep = "", ""
			c = prev
			return m.move(tx, &c, events.CutoverConverting, "")
		case prev.State == events.CutoverBudgetUnmet && o.When == "now":
			prev.Options.When, prev.Error, prev.FailedStep = "now", "", ""
			c = prev
			return m.move(tx, &c, events.CutoverPoweringOff, "")
		case prev.State != events.CutoverRolledBack && prev.State != events.CutoverFailed:
			return fault.Errorf(fault.Conflict, "vm", "VM %s has a cutover in state %s: roll it back or wait for it", loc.VM.ID, prev.State)
		case prev.State == events.CutoverFailed && prev.PoweredOffAt != nil:
			return fault.Errorf(fault.Conflict, "vm", "VM %s's last cutover failed after its source was powered off (%s): roll it back first (POST .../cutover/rollback)", loc.VM.ID, prev.Error)
		}
		jobsOf, err := store.JobsOf(tx, key, loc.VM.ID)
		if err != nil {
			return err
		}
		if replicas.Lookup(replicas.Current(jobsOf), key, loc.VMAID, loc.VCenter, loc.VM.ID) == nil {
			return fault.Errorf(fault.Conflict, "vm", "VM %s has no completed copy: replicate it first (a plan's sync, or POST /api/v1/replications)", loc.VM.ID)
		}
		now := m.cfg.Now().UTC()
		// prev is the zero Cutover when the VM had none.
		c = store.Cutover{ID: fmt.Sprintf("%s-c%d", loc.VM.ID, prev.Number+1), Number: prev.Number + 1, Key: key,
			VM:    events.VMRef{ID: loc.VM.ID, Name: loc.VM.Name, Path: loc.VM.Path, InstanceUUID: loc.VM.InstanceUUID},
			VMAID: loc.VMAID, VCenter: loc.VCenter, Plan: plan, Options: o, Attempt: prev.Attempt, CreatedBy: r.Token, CreatedAt: now, UpdatedAt: now}
		to := events.CutoverPoweringOff
		switch o.When {
		case "at":
			to = events.CutoverScheduled
		case "budget":
			to = events.CutoverSyncing
		}
		if pvm != nil {
			pvm.Cutover = to
			if err := store.PutPlanVM(tx, *pvm); err != nil {
				return err
			}
		}
		return m.move(tx, &c, to, "")
	}()
	return c, err
}

// planVMOf returns the plan VM whose replica is key, and its plan; nil
// and "" when the VM is in no plan.
func planVMOf(tx *bbolt.Tx, key string) (*store.PlanVM, string, error) {
	plans, err := store.Plans(tx)
	if err != nil {
		return nil, "", err
	}
	for _, p := range plans {
		vms, err := store.PlanVMs(tx, p.Name)
		if err != nil {
			return nil, "", err
		}
		for _, vm := range vms {
			if vm.ReplicaID == key {
				return &vm, p.Name, nil
			}
		}
	}
	return nil, "", nil
}

// move moves c to state to inside tx, stores it and writes the event; why
// is the error of a failed step. It keeps its plan VM's cutover state.
func (m *Manager) move(tx *bbolt.Tx, c *store.Cutover, to, why string) error {
	from := c.State
	now := m.cfg.Now().UTC()
	c.State, c.UpdatedAt = to, now
	if from != to {
		c.StepAt = now
	}
	if why != "" {
		c.Error = why
	}
	if to == events.CutoverFailed || to == events.CutoverBudgetUnmet {
		c.FailedStep = from
	}
	if err := store.PutCutover(tx, *c); err != nil {
		return err
	}
	if c.Plan != "" {
		vm, err := store.GetPlanVM(tx, c.Plan, c.VM.ID)
		if err == nil && vm.ReplicaID == c.Key {
			vm.Cutover = to
			if to == events.CutoverRolledBack {
				vm.Cutover = ""
			}
			if err := store.PutPlanVM(tx, vm); err != nil {
				return err
			}
		}
	}
	if from == to {
		return nil
	}
	ev, err := events.New("/godwit/oma", &events.CutoverStateChanged{Cutover: c.ID, VMID: c.VM.ID, Name: c.VM.Name, Plan: c.Plan,
		From: from, To: to, Job: c.FinalJob, Error: why, ChangedAt: now}, now)
	if err != nil {
		return err
	}
	return store.Enqueue(tx, ev)
}

// Get returns the cutover of the VM ref names.
func (m *Manager) Get(ref inventory.Ref) (store.Cutover, error) {
	var c store.Cutover
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		c, err = cutoverOf(tx, ref)
		return err
	})
	return c, err
}

// cutoverOf returns the cutover of the VM ref names, inside tx.
func cutoverOf(tx *bbolt.Tx, ref inventory.Ref) (store.Cutover, error) {
	loc, err := inventory.Find(tx, ref)
	if err != nil {
		return store.Cutover{}, err
	}
	c, err := store.GetCutover(tx, replicas.ID(loc.VMAID, loc.VCenter, loc.VM))
	if errors.Is(err, store.ErrNotFound) {
		return c, fault.Errorf(fault.NotFound, "id", "VM %s has no cutover", ref.VMID)
	}
	return c, err
}

// List returns every cutover.
func (m *Manager) List() ([]store.Cutover, error) {
	var out []store.Cutover
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = store.Cutovers(tx)
		return err
	})
	return out, err
}

// Console returns the serial console of the cutover's last boot check.
func (m *Manager) Console(ref inventory.Ref) ([]byte, error) {
	return m.bootFile(ref, "console", func(b *store.CutoverBoot) string { return b.Console })
}

// Screenshot returns the PNG of the screen its last boot check took at
// its timeout (none when the check did not time out).
func (m *Manager) Screenshot(ref inventory.Ref) ([]byte, error) {
	return m.bootFile(ref, "screenshot", func(b *store.CutoverBoot) string { return b.Screenshot })
}

// bootFile returns the file pick names of the VM's last boot check.
func (m *Manager) bootFile(ref inventory.Ref, what string, pick func(*store.CutoverBoot) string) ([]byte, error) {
	c, err := m.Get(ref)
	if err != nil {
		return nil, err
	}
	if c.Boot == nil || pick(c.Boot) == "" {
		return nil, fault.Errorf(fault.NotFound, "id", "VM %s's cutover (%s) has no %s: its boot check has not run, or took none", ref.VMID, c.State, what)
	}
	b, err := os.ReadFile(pick(c.Boot))
	if err != nil {
		return nil, fmt.Errorf("%s of cutover %s: %w", what, c.ID, err)
	}
	return b, nil
}

// Commit ends the VM's migration after its cutover: the overlays go, the
// target directory stays, and the source is left as it is (off).
func (m *Manager) Commit(ctx context.Context, ref inventory.Ref) (store.Cutover, error) {
	return m.finish(ctx, ref, events.CutoverCommitted)
}

// Rollback undoes a cutover before its commit: the source goes back to the
// power state it had, the converted copy is discarded, and the plan's
// syncs may go on (incremental from the final sync's change ids).
func (m *Manager) Rollback(ctx context.Context, ref inventory.Ref) (store.Cutover, error) {
	return m.finish(ctx, ref, events.CutoverRollingBack)
}

// finish moves the VM's cutover to committed or rolling_back.
func (m *Manager) finish(_ context.Context, ref inventory.Ref, to string) (store.Cutover, error) {
	var c store.Cutover
	err := m.store.Update(func(tx *bbolt.Tx) error {
		var err error
		if c, err = cutoverOf(tx, ref); err != nil {
			return err
		}
		switch {
		case to == events.CutoverCommitted && c.State != events.CutoverCutOver:
			return fault.Errorf(fault.Conflict, "id", "VM %s's cutover is %s: only a cutover in state cut_over can be committed", ref.VMID, c.State)
		case to == events.CutoverRollingBack && (c.State == events.CutoverCommitted || c.State == events.CutoverRolledBack || c.State == events.CutoverRollingBack):
			return fault.Errorf(fault.Conflict, "id", "VM %s's cutover is %s: it cannot be rolled back", ref.VMID, c.State)
		}
		if to == events.CutoverCommitted {
			now := m.cfg.Now().UTC()
			c.DoneAt = &now
		}
		return m.move(tx, &c, to, "")
	})
	m.outbox.Kick()
	if err != nil {
		return c, err
	}
	m.log.Info("cutover "+to, "cutover", c.ID, "vm", c.VM.ID)
	if to == events.CutoverCommitted {
		if c.Dir != "" {
			_ = os.RemoveAll(filepath.Dir(c.Dir)) // the overlays; the target stays
		}
		return c, nil
	}
	m.cancelStep(c.Key)
	m.drive(c.Key)
	return c, nil
}
