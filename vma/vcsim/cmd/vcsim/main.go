// Command vcsim runs godwit's simulated vCenter (package vcsim) on a fixed
// address with fixed development credentials, and writes its certificate
// where a VMA can trust it.
//
// Usage:
//
//	vcsim [-addr 127.0.0.1:8989] [-username U] [-ca-out FILE] [-vms N]
//
// The password is $GODWIT_VCSIM_PASSWORD, or godwit-dev.
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	sim, err := vcsim.Start(ctx, vcsim.Config{Addr: *addr, Username: *user, Password: os.Getenv("GODWIT_VCSIM_PASSWORD"), VMs: *vms})
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
	fmt.Fprintf(os.Stderr, "vcsim ready: vcenter %s, user %s, datacenter %s\n", sim.Host, sim.Username, vcsim.Datacenter)
	<-ctx.Done()
	return nil
}
