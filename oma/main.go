// Command oma runs the godwit OMA appliance, the cloud-side hub: the REST
// API, the embedded NATS JetStream server, bbolt state, and one supervised
// nbdkit per replication job.
//
// Usage:
//
//	oma [flags]                          run the OMA
//	oma -version                         print the version
//	oma help [COMMAND]                   print the usage, or a command's (also: oma COMMAND -h)
//	oma token create -name NAME          print a new API token (the OMA must be stopped;
//	                                     on a running OMA use POST /api/v1/tokens)
//	oma vma add -id ID [-seed-out FILE]  register a VMA and print its settings (the OMA must be
//	  [-ssh-key KEY|-ssh-key-file PATH]  stopped; on a running OMA use POST /api/v1/vmas); with
//	                                     its SSH key, also its authorized_keys line
//	oma vma authorized-keys              print the authorized_keys line of every VMA with a key
//	oma vma nbd-ports -id ID | -all      give a VMA (-all: each registered before shares) its own
//	                                     share of the NBD port pool (the OMA must be stopped)
//	oma cluster-keys -dir DIR            make the keys a new cluster's nodes and OMAs share
//	oma node -cluster-name N ...         run a NATS node of an OMA cluster and nothing else
//	oma watch [-nats-url URL]            print one line per job event (created, each state, the end
//	  [-nkey observer.nk]                with bytes, time and verification), read as the observer
//	oma jobs [list|show JOB|cancel JOB]  the running OMA's jobs, through its API (-api-url,
//	                                     default http://127.0.0.1:8082), with the token in
//	                                     $GODWIT_TOKEN, -token-file, or make-run.token or
//	                                     initial-token in -data
//	oma vms                              the running OMA's VM inventory, the same way
//	oma plans [list|show NAME|preflight NAME]  its migration plans, the same way
//
// Every flag can also come from an environment variable (GODWIT_ and the
// flag name in upper case with '-' as '_', such as GODWIT_API_ADDR) or from
// a JSON config file (-config, keys are flag names). A flag on the command
// line wins over the config file, which wins over the environment.
//
// On first start the data dir gets observer.nk and admin.nk (NATS NKeys for
// the nats CLI) and, while no API token exists, initial-token: all mode 0600.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/godwit/godwit/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitStatus(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitStatus reports err on stderr and returns the exit status: 0 for no
// error or for -h (the usage was printed), else 1.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "oma:", err)
	return 1
}

// subcommands are the oma's subcommands besides running it.
const subcommands = `Usage:
  oma [flags]                          run the OMA
  oma -version                         print the version
  oma help [COMMAND]                   print this, or a command's usage
  oma token create -name NAME          print a new API token (OMA stopped; running: POST /api/v1/tokens)
  oma vma add -id ID [-seed-out FILE]  register a VMA, print its settings (OMA stopped; running: POST /api/v1/vmas)
      [-ssh-key KEY | -ssh-key-file PATH]  with its SSH key: also print its sshd authorized_keys line
  oma vma authorized-keys              print every VMA's authorized_keys line (OMA stopped; running: GET /api/v1/vmas)
  oma vma nbd-ports -id ID | -all      give a VMA (-all: each without one) its share of the NBD ports (OMA stopped)
  oma cluster-keys -dir DIR            make the keys a new cluster's nodes and OMAs share (once; copy DIR to each)
  oma node -cluster-name N ...         run a NATS node of an OMA cluster and nothing else (oma node -h)
  oma watch [-nats-url URL] [-nkey F]  print one line per job event, read as the observer (OMA running)
  oma jobs [list] [-state S] [-vm ID]  list the jobs of the running OMA (its API; oma jobs -h)
  oma jobs show JOB                    show one job: state, bytes, verification, disks
  oma jobs cancel JOB                  cancel a job
  oma jobs pause JOB                   pause a job at a checkpoint, its snapshot kept
  oma jobs resume JOB                  resume a paused job from its checkpoints
  oma jobs rate JOB -rate 50M          set a job's bandwidth limit (K, M, G; 0: none), while it runs
  oma vms                              list the VM inventory (discovered VMs) of the running OMA
  oma plans [list]                     list the migration plans: VMs by state, schedule, next sync
  oma plans show NAME                  show a plan: its VMs' states, last and next syncs, errors
  oma plans preflight NAME             run a plan's preflight and print what is not ok
`

// verbsOf returns the verbs of a command that takes one, false for any
// other command; the first is what it runs without a verb ("" when it
// needs one).
func verbsOf(command string) ([]string, bool) {
	switch command {
	case "token":
		return []string{"", "create"}, true
	case "vma":
		return []string{"", "add", "authorized-keys", "nbd-ports"}, true
	case "jobs":
		return []string{"list", "list", "show", "cancel", "pause", "resume", "rate"}, true
	case "plans":
		return []string{"list", "list", "show", "preflight"}, true
	}
	return nil, false
}

// usageOf returns the lines of subcommands about command (all of them for
// ""), with the lines that continue them.
func usageOf(command string) string {
	if command == "" {
		return subcommands
	}
	out := "Usage:\n"
	in := false
	for _, l := range strings.Split(strings.TrimSuffix(subcommands, "\n"), "\n")[1:] {
		switch {
		case strings.HasPrefix(l, "  oma "+command+" ") || l == "  oma "+command:
			in = true
		case strings.HasPrefix(l, "      "):
			// a continuation line: goes with the previous one
		default:
			in = false
		}
		if in {
			out += l + "\n"
		}
	}
	return out
}

// dispatch runs the subcommand named by args: flags alone run the OMA.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version" || args[0] == "version") {
		_, err := fmt.Fprintln(stdout, version.Line("oma"))
		return err
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return run(ctx, args, stderr)
	}
	if args[0] == "help" {
		return help(args[1:], stdout)
	}
	if verbs, ok := verbsOf(args[0]); ok {
		group := args[0]
		if len(args) == 1 || strings.HasPrefix(args[1], "-") {
			switch {
			case len(args) > 1 && isHelp(args[1]):
				fmt.Fprint(stderr, usageOf(group))
				return flag.ErrHelp
			case verbs[0] == "":
				return fmt.Errorf("oma %s needs a command: %s (oma %s -h)", group, strings.Join(prefixed("oma "+group+" ", verbs[1:]), ", "), group)
			}
			args = append([]string{group, verbs[0]}, args[1:]...)
		}
		if args[1] == "help" {
			fmt.Fprint(stdout, usageOf(group))
			return nil
		}
		if !slices.Contains(verbs[1:], args[1]) {
			return fmt.Errorf("unknown command %q: oma %s has %s (oma %s -h)", group+" "+args[1], group, strings.Join(prefixed("oma "+group+" ", verbs[1:]), ", "), group)
		}
	}
	verb := args[0]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		verb += " " + args[1]
	}
	switch verb {
	case "token create":
		return tokenCreate(args[2:], stdout, stderr)
	case "vma add":
		return vmaAdd(args[2:], stdout, stderr)
	case "vma authorized-keys":
		return vmaAuthorizedKeys(args[2:], stdout, stderr)
	case "vma nbd-ports":
		return vmaNBDPorts(args[2:], stdout, stderr)
	}
	switch args[0] {
	case "cluster-keys":
		return clusterKeys(args[1:], stdout, stderr)
	case "node":
		return node(ctx, args[1:], stderr)
	case "watch":
		return watch(ctx, args[1:], stdout, stderr)
	case "jobs":
		return jobsCmd(ctx, args[1], args[2:], stdout, stderr)
	case "vms":
		return vmsCmd(ctx, args[1:], stdout, stderr)
	case "plans":
		return plansCmd(ctx, args[1], args[2:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: the commands are `oma [flags]`, `oma token create`, `oma vma add`, `oma vma authorized-keys`, `oma vma nbd-ports`, `oma cluster-keys`, `oma node`, `oma watch`, `oma jobs`, `oma vms` and `oma plans` (oma help)", verb)
}

// help implements `oma help [COMMAND]`: the usage on stdout.
func help(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		var cfg config
		fs := newFlagSet("oma", &cfg, stdout)
		declareRunFlags(fs, &cfg)
		fs.Usage()
		return nil
	}
	u := usageOf(args[0])
	if u == "Usage:\n" {
		return fmt.Errorf("help: unknown command %q (oma help lists them)", args[0])
	}
	_, err := fmt.Fprint(stdout, u)
	return err
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func prefixed(prefix string, words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = prefix + w
	}
	return out
}
