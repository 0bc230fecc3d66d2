// Command oma runs the godwit OMA appliance, the cloud-side hub: the REST
// API, the embedded NATS JetStream server, bbolt state, and one supervised
// nbdkit per replication job.
//
// Usage:
//
//	oma [flags]                          run the OMA
//	oma token create -name NAME          print a new API token (the OMA must be stopped;
//	                                     on a running OMA use POST /api/v1/tokens)
//	oma vma add -id ID [-seed-out FILE]  register a VMA and print its settings (the OMA must be
//	  [-ssh-key KEY|-ssh-key-file PATH]  stopped; on a running OMA use POST /api/v1/vmas); with
//	                                     its SSH key, also its authorized_keys line
//	oma vma authorized-keys              print the authorized_keys line of every VMA with a key
//	oma watch [-nats-url URL]            print one line per job event (created, each state, the end
//	  [-nkey observer.nk]                with bytes, time and verification), read as the observer
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
	"strings"
	"syscall"
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
  oma token create -name NAME          print a new API token (OMA stopped; running: POST /api/v1/tokens)
  oma vma add -id ID [-seed-out FILE]  register a VMA, print its settings (OMA stopped; running: POST /api/v1/vmas)
      [-ssh-key KEY | -ssh-key-file PATH]  with its SSH key: also print its sshd authorized_keys line
  oma vma authorized-keys              print every VMA's authorized_keys line (OMA stopped; running: GET /api/v1/vmas)
  oma watch [-nats-url URL] [-nkey F]  print one line per job event, read as the observer (OMA running)
`

// dispatch runs the subcommand named by args: flags alone run the OMA.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return run(ctx, args, stderr)
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
	}
	if args[0] == "watch" {
		return watch(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: the commands are `oma [flags]`, `oma token create`, `oma vma add`, `oma vma authorized-keys` and `oma watch` (oma -h)", verb)
}
