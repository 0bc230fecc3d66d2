package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/godwit/godwit/flagconf"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/control"
	"github.com/godwit/godwit/oma/tokens"
)

// tokenCreate implements `oma token create -name NAME`.
func tokenCreate(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma token create", &cfg, stderr)
	name := fs.String("name", "", "token name (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("token create: -name is required")
	}
	st, err := appliance.OpenStore(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("%w (on a running OMA use POST /api/v1/tokens)", err)
	}
	defer st.Close()
	secret, err := tokens.Create(st, *name, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, secret)
	return err
}

// vmaAdd implements `oma vma add -id ID [-seed-out FILE]`. It prints the
// VMA's settings as the environment variables the vma reads. The NKey
// seed goes into -seed-out (mode 0600) when given, else it is printed for
// the operator to put in a file on the VMA.
func vmaAdd(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma vma add", &cfg, stderr)
	id := fs.String("id", "", "VMA id (required): letters, digits, '-', '_'")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS URL to give the VMA (through its tunnel)")
	apiURL := fs.String("api-url", "http://localhost:8082", "OMA API URL to give the VMA")
	seedOut := fs.String("seed-out", "", "write the VMA's NATS NKey seed to this file (mode 0600) instead of printing it")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("vma add: -id is required")
	}
	if *seedOut != "" {
		// Refuse an existing file before registering: a VMA registered
		// without its seed saved would have to be removed again.
		if _, err := os.Lstat(*seedOut); err == nil {
			return fmt.Errorf("vma add: -seed-out %s exists: remove it or name another file", *seedOut)
		}
	}
	st, err := appliance.OpenStore(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("%w (on a running OMA use POST /api/v1/vmas)", err)
	}
	defer st.Close()
	cred, err := control.RegisterVMA(st, *id, time.Now())
	if err != nil {
		return err
	}
	env := func(flagName, value string) string { return flagconf.EnvName(flagName) + "=" + value + "\n" }
	out := fmt.Sprintf("# VMA %s: these are the vma's settings as environment variables.\n", cred.ID) +
		env("id", cred.ID) + env("nats-url", *natsURL) + env("oma-url", *apiURL)
	if *seedOut != "" {
		abs, err := filepath.Abs(*seedOut)
		if err != nil {
			return fmt.Errorf("vma add: -seed-out: %w", err)
		}
		if err := writeSecret(abs, cred.NKeySeed); err != nil {
			return fmt.Errorf("vma add: VMA %s is registered but its seed could not be saved (POST /api/v1/vmas cannot show it again; register another id): %w", cred.ID, err)
		}
		out += "# The NATS NKey seed is in this file (mode 0600); copy it to the VMA, keep it secret.\n" + env("nats-seed", abs)
	} else {
		out += "# Save the seed below in a file of mode 0600 on the VMA and set " + flagconf.EnvName("nats-seed") + " to its path.\n" +
			"# It is shown once and not stored on the OMA.\n" + cred.NKeySeed + "\n"
	}
	_, err = io.WriteString(stdout, out)
	return err
}

// writeSecret creates path with mode 0600 and writes secret into it; it
// never overwrites an existing file.
func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, secret+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
