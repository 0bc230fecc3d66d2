package cutover

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/bootcheck"
	"github.com/godwit/godwit/oma/convert"
	"github.com/godwit/godwit/oma/inventory"
	"github.com/godwit/godwit/oma/replicas"
	"github.com/godwit/godwit/oma/store"
)

// probeAccel is Config.Accel, or what a real tiny boot under KVM says.
func (m *Manager) probeAccel() string {
	if m.cfg.Accel != "" {
		return m.cfg.Accel
	}
	kernel := bootcheck.HostKernel()
	if kernel == "" {
		return bootcheck.AccelTCG
	}
	ok, why := bootcheck.ProbeKVM(context.Background(), m.cfg.Qemu, kernel, 20*time.Second)
	m.log.Info("KVM probed", "usable", ok, "why", why)
	if ok {
		return bootcheck.AccelKVM
	}
	return bootcheck.AccelTCG
}

// source returns c's VM as discovered and its current replica's disks.
func (m *Manager) source(c store.Cutover) (events.VM, *replicas.Replica, error) {
	var (
		vm  events.VM
		rep *replicas.Replica
	)
	err := m.store.View(func(tx *bbolt.Tx) error {
		loc, err := inventory.Find(tx, inventory.Ref{VMID: c.VM.ID, VMAID: c.VMAID, VCenter: c.VCenter})
		if err != nil {
			return err
		}
		vm = loc.VM
		all, err := store.JobsOf(tx, c.Key, c.VM.ID)
		if err != nil {
			return err
		}
		rep = replicas.Lookup(replicas.Current(all), c.Key, c.VMAID, c.VCenter, c.VM.ID)
		return nil
	})
	if err == nil && rep == nil {
		err = fmt.Errorf("VM %s has no completed copy", c.VM.ID)
	}
	return vm, rep, err
}

// converting makes a new attempt directory with a qcow2 overlay per disk
// of the replica, and converts the guest into the overlays with
// virt-v2v-in-place (unless the options say not to convert).
func (m *Manager) converting(ctx context.Context, c store.Cutover) error {
	vm, rep, err := m.source(c)
	if err != nil {
		return err
	}
	attempt := c.Attempt + 1
	dir := filepath.Join(m.cfg.DataDir, "cutovers", c.Key, fmt.Sprintf("a%d", attempt))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := m.advance(c, func(tx *bbolt.Tx, cur *store.Cutover) error {
		if cur.Dir != "" && cur.Dir != dir {
			_ = os.RemoveAll(cur.Dir) // the failed attempt's overlays
		}
		cur.Attempt, cur.Dir, cur.Converted, cur.Boot, cur.ConversionLog = attempt, dir, false, nil, ""
		c = *cur
		return store.PutCutover(tx, *cur)
	}); err != nil {
		return err
	}
	files, err := m.overlays(ctx, c, vm, rep)
	if err != nil {
		return err
	}
	if !c.Options.Convert {
		return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
			c.Measured.Conversion = m.since(*c)
			return m.move(tx, c, events.CutoverExporting, "")
		})
	}
	domain, err := convert.SourceDomain(vm, files)
	if err != nil {
		return err
	}
	release, err := m.takeHeavy(ctx)
	if err != nil {
		return err
	}
	res, err := convert.Convert(ctx, convert.Options{Binary: m.cfg.VirtV2V, KVM: m.accel() == bootcheck.AccelKVM}, domain, dir)
	release()
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.ConversionLog = res.Log
		if err != nil {
			return m.move(tx, c, events.CutoverFailed, err.Error()+" (virt-v2v's output: "+res.Log+"; the replica is untouched: cut over again to retry on new overlays)")
		}
		c.Converted, c.Measured.Conversion = true, m.since(*c)
		return m.move(tx, c, events.CutoverExporting, "")
	})
}

// overlays creates c's overlays, one per disk of the replica, in c.Dir.
func (m *Manager) overlays(ctx context.Context, c store.Cutover, vm events.VM, rep *replicas.Replica) ([]convert.DiskFile, error) {
	var files []convert.DiskFile
	for _, d := range vm.Disks {
		var base string
		for _, rd := range rep.Disks {
			if rd.Key == d.Key {
				base = rd.VolumePath
			}
		}
		if base == "" {
			return nil, fmt.Errorf("disk %d (%s) of VM %s is not in its replica (job %s)", d.Key, d.Label, vm.ID, rep.JobID)
		}
		path := filepath.Join(c.Dir, fmt.Sprintf("disk-%d.qcow2", d.Key))
		if err := convert.Overlay(ctx, m.cfg.QemuImg, base, path); err != nil {
			return nil, err
		}
		files = append(files, convert.DiskFile{Key: d.Key, Path: path, Format: "qcow2"})
	}
	return files, nil
}

// takeHeavy waits for the one slot of conversions and boot checks.
func (m *Manager) takeHeavy(ctx context.Context) (release func(), err error) {
	select {
	case m.heavy <- struct{}{}:
		return func() { <-m.heavy }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exporting writes each overlay as a standalone disk into the target
// directory, then the domain XML and the CloudStack commands that import
// them.
func (m *Manager) exporting(ctx context.Context, c store.Cutover) error {
	vm, _, err := m.source(c)
	if err != nil {
		return err
	}
	o := c.Options
	if err := os.MkdirAll(o.TargetDir, 0o750); err != nil {
		return fmt.Errorf("target directory: %w", err)
	}
	t := &store.CutoverTarget{Dir: o.TargetDir, Root: o.TargetRoot}
	var files []convert.DiskFile
	for i, d := range convert.DiskOrder(vm) {
		src := filepath.Join(c.Dir, fmt.Sprintf("disk-%d.qcow2", d.Key))
		dst := filepath.Join(o.TargetDir, fmt.Sprintf("%s-disk-%d.%s", safeName(vm.Name), d.Key, o.Format))
		tmp := dst + ".part"
		out, err := exec.CommandContext(ctx, m.cfg.QemuImg, "convert", "-q", "-f", "qcow2", "-O", o.Format, src, tmp).CombinedOutput()
		if err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("write disk %d to %s: qemu-img convert: %v: %s", d.Key, o.TargetDir, err, strings.TrimSpace(string(out)))
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		t.Disks = append(t.Disks, store.CutoverTargetDisk{Key: d.Key, Path: dst, Format: o.Format, Root: i == 0})
		files = append(files, convert.DiskFile{Key: d.Key, Path: dst, Format: o.Format})
	}
	domainOf := convert.SourceDomain
	if c.Converted {
		domainOf = convert.TargetDomain
	}
	domain, err := domainOf(vm, files)
	if err != nil {
		return err
	}
	t.DomainXML = filepath.Join(o.TargetDir, safeName(vm.Name)+".xml")
	if err := os.WriteFile(t.DomainXML, domain, 0o640); err != nil {
		return err
	}
	t.CloudStack = cloudStackCommands(vm, *t)
	if err := os.WriteFile(filepath.Join(o.TargetDir, "cloudstack.txt"), []byte(strings.Join(t.CloudStack, "\n")+"\n"), 0o640); err != nil {
		return err
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.Target, c.Measured.Export = t, m.since(*c)
		if !c.Options.BootCheck {
			return m.cutOver(tx, c)
		}
		return m.move(tx, c, events.CutoverBootCheck, "")
	})
}

// bootCheck boots the target disks in an isolated qemu until the console
// shows the prompt.
func (m *Manager) bootCheck(ctx context.Context, c store.Cutover) error {
	vm, _, err := m.source(c)
	if err != nil {
		return err
	}
	if c.Target == nil {
		return fmt.Errorf("no target disks to boot")
	}
	var disks []bootcheck.Disk
	byKey := map[int32]events.Disk{}
	for _, d := range vm.Disks {
		byKey[d.Key] = d
	}
	for _, d := range c.Target.Disks {
		bus := "virtio"
		if !c.Converted {
			bus = bootBus(convert.SourceBus(byKey[d.Key]))
		}
		disks = append(disks, bootcheck.Disk{Path: d.Path, Format: d.Format, Bus: bus})
	}
	cfg := bootcheck.Config{Qemu: m.cfg.Qemu, Accel: m.accel(), MemoryMiB: min(max(vm.MemoryMB, 256), 2048), Timeout: m.cfg.BootTimeout,
		Screendump: filepath.Join(c.Dir, "screen.png"), Firmware: vm.Firmware}
	if c.Options.BootPrompt != "" {
		cfg.Prompt = regexp.MustCompile(c.Options.BootPrompt) // checked by options
	}
	release, err := m.takeHeavy(ctx)
	if err != nil {
		return err
	}
	res, err := bootcheck.Run(ctx, cfg, disks)
	release()
	if err != nil {
		return err
	}
	console := filepath.Join(c.Dir, "console.log")
	if werr := os.WriteFile(console, res.Console, 0o600); werr != nil {
		return werr
	}
	return m.advance(c, func(tx *bbolt.Tx, c *store.Cutover) error {
		c.Boot = &store.CutoverBoot{Passed: res.Passed, Accel: res.Accel, Seconds: res.Seconds, Reason: res.Reason, Console: console, Screenshot: res.Screendump}
		if !res.Passed {
			return m.move(tx, c, events.CutoverFailed, "boot check: "+res.Reason)
		}
		c.Measured.BootCheck = m.since(*c)
		return m.cutOver(tx, c)
	})
}

// bootBus is the bus an unconverted disk boots on in the check: its
// source's, SCSI as SATA (a guest made for VMware has its AHCI driver more
// often than one for qemu's SCSI controllers).
func bootBus(source string) string {
	if source == "ide" {
		return "ide"
	}
	return "sata"
}

// cutOver ends the steps of c inside tx: the downtime measured and
// published next to the prediction.
func (m *Manager) cutOver(tx *bbolt.Tx, c *store.Cutover) error {
	d := &c.Measured
	d.Total = d.PowerOff + d.FinalSync + d.Conversion + d.Export + d.BootCheck
	if c.DownSince != nil { // from the power-off command on, failed attempts included
		d.Total = m.cfg.Now().Sub(*c.DownSince).Seconds()
	}
	now := m.cfg.Now().UTC()
	c.DoneAt = &now
	done := &events.CutoverDone{Cutover: c.ID, VMID: c.VM.ID, Name: c.VM.Name, Plan: c.Plan, Measured: *d,
		FinalSyncBytes: c.FinalSyncBytes, Converted: c.Converted, DoneAt: now}
	if c.Predicted != nil {
		done.PredictedSeconds = c.Predicted.Total
	}
	if c.Boot != nil {
		done.Accel = c.Boot.Accel
	}
	if c.Target != nil {
		done.TargetDir = c.Target.Dir
	}
	if err := m.move(tx, c, events.CutoverCutOver, ""); err != nil {
		return err
	}
	ev, err := events.New("/godwit/oma", done, now)
	if err != nil {
		return err
	}
	m.log.Info("cut over", "cutover", c.ID, "downtime", d.Total, "power_off", d.PowerOff, "final_sync", d.FinalSync,
		"conversion", d.Conversion, "export", d.Export, "boot_check", d.BootCheck, "predicted", done.PredictedSeconds)
	return store.Enqueue(tx, ev)
}
