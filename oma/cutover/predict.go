package cutover

import (
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/oma/bootcheck"
	"github.com/godwit/godwit/oma/store"
)

// Defaults of a prediction's parts, in seconds, for what was never
// measured here: a guest shutdown, a hard power-off, a conversion, an
// export and a boot check under TCG and KVM.
const (
	defaultGuestShutdown = 30
	defaultHardPowerOff  = 2
	defaultConvertTCG    = 300
	defaultConvertKVM    = 90
	defaultExport        = 5
	defaultBootTCG       = 90
	defaultBootKVM       = 30
)

// Prediction is a cutover's downtime predicted, by part, with where each
// part's figure comes from.
type Prediction struct {
	Downtime events.Downtime `json:"downtime"`
	// Basis says, per part, "measured ..." or "default ...".
	Basis map[string]string `json:"basis"`
	// LastSyncBytes and RateBytesPerSecond are what the final sync's part
	// stands on: the last sync's changed bytes over the copy rate measured.
	LastSyncBytes      int64   `json:"last_sync_bytes"`
	RateBytesPerSecond float64 `json:"rate_bytes_per_second"`
}

// Predict predicts the downtime of cutover c now: the last sync's changed
// bytes over the copy rate measured for the VM, plus the job's fixed costs
// (snapshot, verification, snapshot removal) as its last sync measured
// them, plus the power-off, conversion, export and boot check as the last
// cutover that measured them did (this VM's first), else defaults.
func (m *Manager) Predict(c store.Cutover) (Prediction, error) {
	var p Prediction
	err := m.store.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = predict(tx, c, m.cfg.Accel == bootcheck.AccelKVM, nil)
		return err
	})
	return p, err
}

// predict is Predict inside tx. cutovers are every cutover, when the
// caller read them already; nil reads them.
func predict(tx *bbolt.Tx, c store.Cutover, kvm bool, cutovers []store.Cutover) (Prediction, error) {
	p := Prediction{Basis: map[string]string{}}
	all, err := store.JobsOf(tx, c.Key, c.VM.ID)
	if err != nil {
		return p, err
	}
	var done []store.Job
	for _, j := range all {
		if j.State == events.JobCompleted && j.FinishedAt != nil {
			done = append(done, j)
		}
	}
	slices.SortFunc(done, func(a, b store.Job) int { return a.FinishedAt.Compare(*b.FinishedAt) })
	if len(done) > 0 {
		// The rate of the biggest copy: the one least made of fixed costs.
		big := slices.MaxFunc(done, func(a, b store.Job) int { return int(min(max(a.BytesWritten-b.BytesWritten, -1), 1)) })
		rate := float64(big.AverageRateBytesPerSecond)
		if secs := big.FinishedAt.Sub(big.CreatedAt).Seconds(); rate <= 0 && secs > 0 {
			rate = float64(big.BytesWritten) / secs
		}
		last := done[len(done)-1]
		p.LastSyncBytes, p.RateBytesPerSecond = last.BytesWritten, rate
		copySecs := 0.0
		if rate > 0 {
			copySecs = float64(last.BytesWritten) / rate
		}
		fixed := max(last.FinishedAt.Sub(last.CreatedAt).Seconds()-copySecs, 0)
		p.Downtime.FinalSync = fixed + copySecs
		p.Basis["final_sync"] = fmt.Sprintf("measured: the last sync's %d bytes at %.0f bytes/s, plus its %.1f s of snapshot and checks", last.BytesWritten, rate, fixed)
	}
	if cutovers == nil {
		if cutovers, err = store.Cutovers(tx); err != nil {
			return p, err
		}
	}
	// The measured cutovers, this VM's last.
	var measured []store.Cutover
	for _, o := range cutovers {
		if o.Measured.Total > 0 || o.Measured.PowerOff > 0 {
			measured = append(measured, o)
		}
	}
	slices.SortFunc(measured, func(a, b store.Cutover) int {
		if (a.Key == c.Key) != (b.Key == c.Key) {
			if a.Key == c.Key {
				return 1
			}
			return -1
		}
		return a.UpdatedAt.Compare(b.UpdatedAt)
	})
	part := func(name string, get func(store.Cutover) float64, ok func(store.Cutover) bool, def float64, defWhy string) float64 {
		for i := len(measured) - 1; i >= 0; i-- {
			if v := get(measured[i]); v > 0 && ok(measured[i]) {
				p.Basis[name] = "measured: cutover " + measured[i].ID
				return v
			}
		}
		p.Basis[name] = "default: " + defWhy
		return def
	}
	any := func(store.Cutover) bool { return true }
	if c.Options.PowerOff == events.PowerOffHard {
		p.Downtime.PowerOff = part("power_off", func(o store.Cutover) float64 { return o.Measured.PowerOff },
			func(o store.Cutover) bool { return o.PowerMethod == events.PowerMethodHard }, defaultHardPowerOff, "a hard power-off")
	} else {
		p.Downtime.PowerOff = part("power_off", func(o store.Cutover) float64 { return o.Measured.PowerOff },
			func(o store.Cutover) bool { return o.PowerMethod != events.PowerMethodNone }, defaultGuestShutdown, "a guest shutdown")
	}
	if c.Options.Convert {
		def, why := float64(defaultConvertTCG), "virt-v2v under TCG"
		if kvm {
			def, why = defaultConvertKVM, "virt-v2v under KVM"
		}
		p.Downtime.Conversion = part("conversion", func(o store.Cutover) float64 { return o.Measured.Conversion },
			func(o store.Cutover) bool { return o.Converted }, def, why)
	} else {
		p.Basis["conversion"] = "none: convert is false"
	}
	p.Downtime.Export = part("export", func(o store.Cutover) float64 { return o.Measured.Export }, any, defaultExport, "writing the target disks")
	if c.Options.BootCheck {
		def, why := float64(defaultBootTCG), "a boot under TCG"
		if kvm {
			def, why = defaultBootKVM, "a boot under KVM"
		}
		p.Downtime.BootCheck = part("boot_check", func(o store.Cutover) float64 { return o.Measured.BootCheck }, any, def, why)
	} else {
		p.Basis["boot_check"] = "none: boot_check is false"
	}
	d := &p.Downtime
	d.Total = d.PowerOff + d.FinalSync + d.Conversion + d.Export + d.BootCheck
	return p, nil
}

// Downtimes are a VM's cutover downtimes, in seconds: predicted now, and
// measured once it cut over (0 before).
type Downtimes struct {
	Predicted, Measured float64
}

// DowntimesOf returns the Downtimes of the VMs whose replicas key vms
// (replica key to VM), read in one transaction: a cutover's prediction
// with its options when it has one, else with the defaults.
func (m *Manager) DowntimesOf(vms map[string]events.VMRef) (map[string]Downtimes, error) {
	out := make(map[string]Downtimes, len(vms))
	err := m.store.View(func(tx *bbolt.Tx) error {
		all, err := store.Cutovers(tx)
		if err != nil {
			return err
		}
		byKey := make(map[string]store.Cutover, len(all))
		for _, c := range all {
			byKey[c.Key] = c
		}
		for key, vm := range vms {
			c, ok := byKey[key]
			if !ok {
				c = store.Cutover{Key: key, VM: vm, Options: store.CutoverOptions{PowerOff: events.PowerOffGuestThenHard, Convert: true, BootCheck: true}}
			}
			p, err := predict(tx, c, m.cfg.Accel == bootcheck.AccelKVM, all)
			if err != nil {
				return err
			}
			out[key] = Downtimes{Predicted: p.Downtime.Total, Measured: c.Measured.Total}
		}
		return nil
	})
	return out, err
}
