// Package watch turns the bus's job and plan events into one line each
// for a terminal: a job created, each change of state (verifying: reading
// the copy back), and its end with the bytes it moved, how long it took and
// whether, and in how long, they were verified; a plan created or changed,
// its syncs scheduled, its VMs' states and their completed syncs; a
// cutover's steps, its downtime, and the source's power-off and power-on.
//
// Every string that comes from a VMA or vCenter (VM names, ids, states,
// errors) is written through printable.Quote: a VM named with an escape
// sequence shows as "web\x1b[2J01" and cannot act on the terminal.
//
// It reads only what the observer may: live subscriptions to godwit.job.>,
// godwit.status.> and godwit.plan.>, so it changes nothing and needs no
// JetStream access.
package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/godwit/godwit/events"
	"github.com/godwit/godwit/events/subject"
	"github.com/godwit/godwit/printable"
)

// Printer writes one line per job event to its writer. It is not safe for
// concurrent use: Run feeds it from one goroutine.
type Printer struct {
	out  io.Writer
	loc  *time.Location
	jobs map[string]*job
}

// job is what a Printer remembers of a job between its events.
type job struct {
	started time.Time // when it left queued; zero if not seen
	// verifying is when it began reading its copy back, verifyTook how
	// long that took (until finalizing); zero if not seen.
	verifying  time.Time
	verifyTook time.Duration
	bytes      int64 // from its completed status
	disks      int
	verified   int
}

// NewPrinter returns a Printer writing to out, with times in loc (nil: local time).
func NewPrinter(out io.Writer, loc *time.Location) *Printer {
	if loc == nil {
		loc = time.Local
	}
	return &Printer{out: out, loc: loc, jobs: map[string]*job{}}
}

// Handle writes the line ev makes, if any: JobCreated, JobStateChanged,
// the queue's and the plans' events make one; a ReplicationStatus is
// remembered for the job's last line. Events of other types are ignored.
func (p *Printer) Handle(ev events.Event) error {
	pl, ok := events.NewPayload(ev.Type)
	if !ok {
		return nil
	}
	if err := ev.Decode(pl); err != nil {
		return fmt.Errorf("watch: event %s: %w", q(ev.ID), err)
	}
	switch e := pl.(type) {
	case *events.JobCreated:
		var size int64
		for _, d := range e.Disks {
			size += d.CapacityBytes
		}
		return p.line(e.CreatedAt, e.JobID, fmt.Sprintf("created: %s, %s, %d disk(s), %s, on %s",
			q(e.VM.Name), q(e.ReplicationType), len(e.Disks), Bytes(size), q(e.VMAID)))
	case *events.ReplicationStatus:
		if e.State == events.JobCompleted {
			j := p.job(e.JobID)
			j.bytes, j.disks, j.verified = e.BytesTransferred, len(e.Disks), 0
			for _, d := range e.Disks {
				if d.Verified {
					j.verified++
				}
			}
		}
		return nil
	case *events.JobStateChanged:
		return p.stateChanged(e)
	case *events.QueueQueued:
		return p.line(e.QueuedAt, e.JobID, fmt.Sprintf("waiting in the queue at %d: %s", e.Position, q(e.WaitingFor)))
	case *events.QueueDispatched:
		return p.line(e.DispatchedAt, e.JobID, fmt.Sprintf("dispatched to %s after %s in the queue",
			q(e.VMAID), time.Duration(e.WaitedSeconds*float64(time.Second)).Round(time.Second)))
	case *events.QueueMoved:
		what := "waiting job moved"
		if e.Running {
			what = "taken over"
		}
		return p.line(e.MovedAt, e.JobID, fmt.Sprintf("%s from %s to %s (attempt %d): %s", what, q(e.FromVMA), q(e.VMAID), e.Attempt, q(e.Reason)))
	case *events.QueueLimits:
		return p.limitsLine(e)
	case *events.PlanCreated:
		waves := map[int]bool{}
		for _, vm := range e.VMs {
			waves[vm.Wave] = true
		}
		return p.planLine(e.CreatedAt, e.Plan, fmt.Sprintf("created: %d VM(s) of %s in %d wave(s), %s, first sync due %s",
			len(e.VMs), q(e.VCenter), len(waves), q(scheduleText(e.Sync)), e.NextDue.In(p.loc).Format("15:04:05")))
	case *events.PlanChanged:
		msg := "changed: " + q(e.Change)
		switch e.Change {
		case events.PlanChangeVMs:
			msg = fmt.Sprintf("changed: %d VM(s) added, %d removed", len(e.Added), len(e.Removed))
		case events.PlanChangeSchedule:
			if e.Sync != nil {
				msg = "changed: schedule " + q(scheduleText(*e.Sync))
			}
		case events.PlanChangePaused, events.PlanChangeResumed, events.PlanChangeDeleted:
			msg = q(e.Change)
		}
		if e.NextDue != nil && e.Change != events.PlanChangeDeleted && e.Change != events.PlanChangePaused {
			msg += ", next sync due " + e.NextDue.In(p.loc).Format("15:04:05")
		}
		return p.planLine(e.ChangedAt, e.Plan, msg)
	case *events.PlanSyncScheduled:
		return p.planLine(e.At, e.Plan, fmt.Sprintf("sync %d (%s): %d VM(s) due, next due %s",
			e.Sync, q(e.Reason), e.DueVMs, e.NextDue.In(p.loc).Format("15:04:05")))
	case *events.PlanVMStateChanged:
		msg := fmt.Sprintf("vm %s %s -> %s", q(e.Name), q(e.From), q(e.To))
		if e.Job != "" {
			msg += " (job " + q(e.Job) + ")"
		}
		if e.Error != "" {
			msg += ": " + q(e.Error)
		}
		return p.planLine(e.ChangedAt, e.Plan, msg)
	case *events.CutoverStateChanged:
		msg := fmt.Sprintf("vm %s %s -> %s", q(e.Name), q(e.From), q(e.To))
		if e.From == "" {
			msg = fmt.Sprintf("vm %s started: %s", q(e.Name), q(e.To))
		}
		if e.Job != "" && (e.To == events.CutoverConverting || e.To == events.CutoverFailed) {
			msg += " (final sync " + q(e.Job) + ")"
		}
		if e.Error != "" {
			msg += ": " + q(e.Error)
		}
		return p.cutoverLine(e.ChangedAt, e.Cutover, msg)
	case *events.CutoverDone:
		d := e.Measured
		msg := fmt.Sprintf("vm %s cut over: downtime %s (power-off %s, final sync %s of %s, conversion %s, export %s, boot check %s), predicted %s; disks in %s",
			q(e.Name), secs(d.Total), secs(d.PowerOff), secs(d.FinalSync), Bytes(e.FinalSyncBytes), secs(d.Conversion), secs(d.Export),
			secs(d.BootCheck), secs(e.PredictedSeconds), q(e.TargetDir))
		return p.cutoverLine(e.DoneAt, e.Cutover, msg)
	case *events.PowerReport:
		msg := fmt.Sprintf("%s vm %s: %s -> %s (%s) in %s", q(e.Action), q(e.VMID), q(e.StateBefore), q(e.StateAfter), q(e.Method), secs(e.Seconds))
		if e.Error != nil {
			msg = fmt.Sprintf("%s vm %s failed after %s: %s", q(e.Action), q(e.VMID), secs(e.Seconds), q(e.Error.Message))
		}
		_, err := fmt.Fprintf(p.out, "%s power %s %s\n", e.DoneAt.In(p.loc).Format("15:04:05"), q(e.RequestID), msg)
		return err
	case *events.PlanSyncDone:
		msg := fmt.Sprintf("vm %s synced: %s, %s copied in %s", q(e.Name), q(e.ReplicationType), Bytes(e.BytesChanged),
			roundDuration(time.Duration(e.DurationSeconds*float64(time.Second))))
		if e.Verified {
			msg += ", verified"
		}
		return p.planLine(e.FinishedAt, e.Plan, msg)
	}
	return nil
}

// cutoverLine writes one line for cutover id. msg's parts from outside
// must already be quoted.
func (p *Printer) cutoverLine(at time.Time, id, msg string) error {
	_, err := fmt.Fprintf(p.out, "%s cutover %s %s\n", at.In(p.loc).Format("15:04:05"), q(id), msg)
	return err
}

// secs says a number of seconds as a duration, rounded.
func secs(s float64) string { return roundDuration(time.Duration(s * float64(time.Second))).String() }

// scheduleText says a plan's schedule in a few words.
func scheduleText(s events.PlanSchedule) string {
	out := "cron " + s.Cron
	if s.Interval != "" {
		out = "every " + s.Interval
	}
	if s.Window != nil {
		out += " inside " + s.Window.Start + "-" + s.Window.End
		if s.Window.TZ != "" {
			out += " " + s.Window.TZ
		}
	}
	return out
}

// planLine writes one line for the plan named plan. msg's parts from
// outside must already be quoted.
func (p *Printer) planLine(at time.Time, plan, msg string) error {
	_, err := fmt.Fprintf(p.out, "%s plan %s %s\n", at.In(p.loc).Format("15:04:05"), q(plan), msg)
	return err
}

// limitsLine writes the line of a change to the queue's limits.
func (p *Printer) limitsLine(e *events.QueueLimits) error {
	var parts []string
	if e.Rate != nil {
		rate := "no rate limit"
		if *e.Rate > 0 {
			rate = "rate " + Bytes(*e.Rate) + "/s"
		}
		parts = append(parts, rate)
	}
	for _, w := range e.RateWindows {
		rate := "none"
		if w.Rate > 0 {
			rate = Bytes(w.Rate) + "/s"
		}
		tz := w.TZ
		if tz == "" {
			tz = "UTC"
		}
		parts = append(parts, fmt.Sprintf("%s-%s %s: %s", q(w.Start), q(w.End), q(tz), rate))
	}
	if e.VCenter > 0 {
		parts = append(parts, fmt.Sprintf("%d jobs at once, %d per ESXi host, %d per datastore", e.VCenter, e.ESXiHost, e.Datastore))
	}
	_, err := fmt.Fprintf(p.out, "%s limits %s %s: %s\n", e.ChangedAt.In(p.loc).Format("15:04:05"), q(e.Object), q(e.Name), strings.Join(parts, ", "))
	return err
}

func (p *Printer) job(id string) *job {
	j, ok := p.jobs[id]
	if !ok {
		j = &job{}
		p.jobs[id] = j
	}
	return j
}

func (p *Printer) stateChanged(e *events.JobStateChanged) error {
	j := p.job(e.JobID)
	switch e.To {
	case events.JobSnapshotting:
		j.started = e.ChangedAt
	case events.JobVerifying:
		j.verifying = e.ChangedAt
		return p.line(e.ChangedAt, e.JobID, q(e.From)+" -> "+q(e.To)+": every byte copied, checking the copy")
	case events.JobFinalizing:
		if !j.verifying.IsZero() {
			j.verifyTook = e.ChangedAt.Sub(j.verifying)
		}
	case events.JobCompleted:
		delete(p.jobs, e.JobID)
		msg := fmt.Sprintf("completed: %s copied", Bytes(j.bytes))
		if !j.started.IsZero() {
			d := e.ChangedAt.Sub(j.started)
			msg += fmt.Sprintf(" in %s", d.Round(100*time.Millisecond))
			if s := d.Seconds(); s > 0 {
				msg += fmt.Sprintf(" (%s/s)", Bytes(int64(float64(j.bytes)/s)))
			}
		}
		switch {
		case j.disks > 0 && j.verified == j.disks && j.verifyTook > 0:
			msg += fmt.Sprintf(", verified (checked in %s)", roundDuration(j.verifyTook))
		case j.disks > 0 && j.verified == j.disks:
			msg += ", verified"
		case j.disks > 0:
			msg += fmt.Sprintf(", %d of %d disks verified", j.verified, j.disks)
		}
		return p.line(e.ChangedAt, e.JobID, msg)
	case events.JobFailed, events.JobCancelled, events.JobPausedExpired:
		delete(p.jobs, e.JobID)
		msg := q(e.To)
		if e.Error != "" {
			msg += ": " + q(e.Error)
		}
		return p.line(e.ChangedAt, e.JobID, msg)
	case events.JobPaused:
		msg := q(e.From) + " -> " + q(e.To)
		if e.Error != "" {
			msg += ": " + q(e.Error)
		}
		return p.line(e.ChangedAt, e.JobID, msg)
	}
	return p.line(e.ChangedAt, e.JobID, q(e.From)+" -> "+q(e.To))
}

// line writes one line for the job jobID. msg's parts from outside must
// already be quoted.
func (p *Printer) line(at time.Time, jobID, msg string) error {
	_, err := fmt.Fprintf(p.out, "%s job %s %s\n", at.In(p.loc).Format("15:04:05"), q(jobID), msg)
	return err
}

// q quotes a string from a VMA or vCenter for the terminal.
func q(s string) string { return printable.Quote(s) }

// roundDuration rounds d to a tenth of a second, or to the millisecond
// below one second: 1.5s, 340ms.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// Bytes formats n in binary units: 512 B, 1.5 KiB, 40.0 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Run subscribes nc to the job and status events of every VMA and hands
// them to p in the order they arrive, until ctx ends (nil) or a
// subscription cannot be made (a refused one is reported to nc's error
// handler). An event that cannot be read is reported on p's
// writer and skipped.
func Run(ctx context.Context, nc *nats.Conn, p *Printer) error {
	msgs := make(chan *nats.Msg, 1024)
	for _, subj := range []string{subject.AllJobs, subject.AllStatus, subject.AllPlans} {
		sub, err := nc.ChanSubscribe(subj, msgs)
		if err != nil {
			return fmt.Errorf("watch: subscribe %s: %w", subj, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	// Not connected yet (the OMA is starting): the subscriptions are sent
	// when the connection is made, so there is nothing to wait for.
	_ = nc.Flush()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			var ev events.Event
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				fmt.Fprintf(p.out, "watch: unreadable message on %s: %s\n", q(m.Subject), q(err.Error()))
				continue
			}
			if err := p.Handle(ev); err != nil {
				fmt.Fprintln(p.out, q(err.Error()))
			}
		}
	}
}
