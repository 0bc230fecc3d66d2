package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/godwit/godwit/oma/plans"
	jobwatch "github.com/godwit/godwit/oma/watch"
	"github.com/godwit/godwit/printable"
)

// plansCmd implements `oma plans list|show|preflight`.
func plansCmd(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	var of operatorFlags
	var name string
	if verb != "list" {
		var err error
		if name, args, err = operand("plans", verb, "the plan's name", "NAME", args, stderr); err != nil {
			return err
		}
	}
	fs := newOperatorFlagSet("oma plans "+verb, &of, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := of.client()
	if err != nil {
		return fmt.Errorf("plans %s: %w", verb, err)
	}
	switch verb {
	case "list":
		return c.show(ctx, http.MethodGet, "/api/v1/plans", of.json, stdout, func(body []byte) error {
			var list struct {
				Plans []plans.View `json:"plans"`
			}
			if err := json.Unmarshal(body, &list); err != nil {
				return err
			}
			return printPlans(stdout, list.Plans)
		})
	case "show":
		return c.show(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(name), of.json, stdout, func(body []byte) error {
			var p plans.View
			if err := json.Unmarshal(body, &p); err != nil {
				return err
			}
			return printPlan(stdout, p)
		})
	case "preflight":
		return c.show(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(name)+"/preflight", of.json, stdout, func(body []byte) error {
			var r plans.Report
			if err := json.Unmarshal(body, &r); err != nil {
				return err
			}
			return printPreflight(stdout, r)
		})
	}
	return fmt.Errorf("unknown command %q", "plans "+verb)
}

// counts says a plan's VMs by state, the states with none left out.
func counts(p plans.View) string {
	var parts []string
	for _, s := range []string{"pending", "copying", "synced", "syncing", "failed", "paused"} {
		if n := p.Counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(parts) == 0 {
		return "no VMs"
	}
	return strings.Join(parts, ", ")
}

func printPlans(w io.Writer, list []plans.View) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no plans")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLAN\tVCENTER\tVMS\tSCHEDULE\tSYNCS\tNEXT DUE\tCOPIED\tBLOCKED")
	for _, p := range list {
		blocked := "-"
		if p.Blocked != "" {
			blocked = p.Blocked
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", printable.Quote(p.Name), printable.Quote(p.VCenter), counts(p), printable.Quote(p.Schedule),
			p.Syncs, p.NextDue.Local().Format(time.DateTime), jobwatch.Bytes(p.BytesCopied), printable.Quote(blocked))
	}
	return tw.Flush()
}

func printPlan(w io.Writer, p plans.View) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("plan", "%s, vCenter %s", printable.Quote(p.Name), printable.Quote(p.VCenter))
	row("schedule", "%s; %d syncs, the next due %s", printable.Quote(p.Schedule), p.Syncs, p.NextDue.Local().Format(time.DateTime))
	row("vms", "%s in %d wave(s); %s copied", counts(p), len(p.Waves), jobwatch.Bytes(p.BytesCopied))
	if p.Blocked != "" {
		row("blocked", "%s", printable.Quote(p.Blocked))
	}
	row("preflight", "%d error(s), at %s", p.PreflightErrors, p.PreflightAt.Local().Format(time.DateTime))
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nVM\tWAVE\tSTATE\tJOB\tLAST SYNC\tNEXT SYNC\tCUTOVER\tDOWNTIME\tNOTE")
	for _, vm := range p.VMs {
		job, last, next, cut, down, note := "-", "-", "-", "-", "-", ""
		if vm.Cutover != "" {
			cut = printable.Quote(vm.Cutover)
		}
		if vm.PredictedDowntimeSeconds != nil {
			down = "~" + time.Duration(*vm.PredictedDowntimeSeconds*float64(time.Second)).Round(time.Second).String()
		}
		if vm.CurrentJob != "" {
			job = printable.Quote(vm.CurrentJob)
		}
		if s := vm.LastSync; s != nil {
			last = fmt.Sprintf("%s %s, %s in %s", s.FinishedAt.Local().Format(time.DateTime), s.Type, jobwatch.Bytes(s.BytesChanged),
				time.Duration(s.DurationSeconds*float64(time.Second)).Round(100*time.Millisecond))
		}
		if vm.NextSync != nil {
			next = vm.NextSync.Local().Format(time.DateTime)
		}
		switch {
		case vm.PauseReason != "":
			note = vm.PauseReason
		case vm.LastError != "":
			note = vm.LastError
		case vm.Waiting != "":
			note = vm.Waiting
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable.Quote(vm.Name), vm.Wave, vm.State, job, last, next, cut, down, printable.Quote(note))
	}
	return tw.Flush()
}

func printPreflight(w io.Writer, r plans.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "plan %s: %s, %d error(s), %d warning(s)", printable.Quote(r.Plan), r.Status, r.Errors, r.Warnings)
	if r.Blocks {
		fmt.Fprint(tw, ": the plan does not copy until the errors are gone")
	}
	fmt.Fprintln(tw)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "  plan\t%s\t%s\t%s\n", c.Check, c.Status, printable.Quote(c.Message))
	}
	for _, vm := range r.VMs {
		for _, c := range vm.Checks {
			if c.Status != plans.OK {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable.Quote(vm.Name), c.Check, c.Status, printable.Quote(c.Message))
			}
		}
	}
	return tw.Flush()
}
