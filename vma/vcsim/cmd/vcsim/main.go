// Command vcsim runs godwit's simulated vCenter (package vcsim) on a fixed
// address with fixed development credentials, and writes its certificate
// where a VMA can trust it.
//
// Usage:
//
//	vcsim [-addr 127.0.0.1:8989] [-username U] [-ca-out FILE] [-vms N] [-datastore DIR]
//
// The password is $GODWIT_VCSIM_PASSWORD, or godwit-dev. With -datastore,
// the VMs' disks live in DIR and keep their content across restarts;
// without it, in a temporary directory removed on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/godwit/godwit/vma/vcsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vcsim", flag.ContinueOnError)
	addr := fs.String("addr", vcsim.DefaultAddr, "listen address")
	user := fs.String("username", vcsim.DefaultUsername, "user name")
	caOut := fs.String("ca-out", "", "write the simulator's certificate (PEM) to this file")
	vms := fs.Int("vms", 12, "generated VMs besides PGWINTESTBIOS")
	datastore := fs.String("datastore", "", "directory holding the datastore (disks kept across restarts); default a temporary one")
	if err := fs.Parse(args); err != nil {
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
	fmt.Fprintf(os.Stderr, "vcsim ready: vcenter %s, user %s, datacenter %s, datastore %s\n", sim.Host, sim.Username, vcsim.Datacenter, sim.DatastoreDir)
	<-ctx.Done()
	return nil
}
