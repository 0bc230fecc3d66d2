// Command vcsim runs godwit's simulated vCenter (package vcsim) on a fixed
// address with fixed development credentials, and writes its certificate
// where a VMA can trust it.
//
// Usage:
//
//	vcsim [-addr 127.0.0.1:8989] [-username U] [-ca-out FILE] [-vms N] [-datastore DIR]
//	vcsim -version
//
// The password is $GODWIT_VCSIM_PASSWORD, or godwit-dev. With -datastore,
// the VMs' disks live in DIR and keep their content across restarts;
// without it, in a temporary directory removed on exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/godwit/godwit/version"
	"github.com/godwit/godwit/vma/vcsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitStatus(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitStatus reports err on stderr and returns the exit status: 0 for no
// error or for -h (the usage was printed), else 1.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "vcsim:", err)
	return 1
}

// run runs the simulator with the flags in args until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vcsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vcsim [flags]: godwit's simulated vCenter, password $GODWIT_VCSIM_PASSWORD (default %s)\n\nFlags:\n", vcsim.DefaultPassword)
		fs.PrintDefaults()
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	addr := fs.String("addr", vcsim.DefaultAddr, "listen address")
	user := fs.String("username", vcsim.DefaultUsername, "user name")
	caOut := fs.String("ca-out", "", "write the simulator's certificate (PEM) to this file")
	vms := fs.Int("vms", 12, "generated VMs besides PGWINTESTBIOS")
	datastore := fs.String("datastore", "", "directory holding the datastore (disks kept across restarts); default a temporary one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: vcsim takes only flags (vcsim -h)", fs.Arg(0))
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, version.Line("vcsim"))
		return err
	}
	sim, err := vcsim.Start(ctx, vcsim.Config{Addr: *addr, Username: *user, Password: os.Getenv("GODWIT_VCSIM_PASSWORD"), VMs: *vms,
		Datastore: *datastore})
	if err != nil {
		return err
	}
	defer sim.Close()
	if *caOut != "" {
		pem, err := os.ReadFile(sim.CAFile)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*caOut, pem, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "vcsim ready: vcenter %s, user %s, datacenter %s, datastore %s\n", sim.Host, sim.Username, vcsim.Datacenter, sim.DatastoreDir)
	<-ctx.Done()
	return nil
}
