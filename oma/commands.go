package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"go.etcd.io/bbolt"

	"github.com/godwit/godwit/flagconf"
	"github.com/godwit/godwit/oma/appliance"
	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/jobs"
	"github.com/godwit/godwit/oma/store"
	"github.com/godwit/godwit/oma/tokens"
	"github.com/godwit/godwit/oma/tunnels"
	"github.com/godwit/godwit/oma/vmas"
	jobwatch "github.com/godwit/godwit/oma/watch"
)

// tokenCreate implements `oma token create -name NAME [-scope SCOPE]`.
func tokenCreate(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma token create", &cfg, stderr)
	name := fs.String("name", "", "token name (required)")
	scopeName := fs.String("scope", string(tokens.DefaultScope), "what the token may do: read (GET only), operate (also discovery and jobs) or admin (also tokens and VMAs)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("token create: -name is required")
	}
	scope, err := tokens.ParseScope(*scopeName)
	if err != nil {
		return fmt.Errorf("token create: -scope: %w", err)
	}
	st, err := appliance.OpenStore(cfg.state())
	if err != nil {
		return fmt.Errorf("%w (on a running OMA use POST /api/v1/tokens)", err)
	}
	defer st.Close()
	secret, err := tokens.Create(st, *name, scope, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, secret)
	return err
}

// vmaAdd implements `oma vma add -id ID [-seed-out FILE] [-ssh-key KEY |
// -ssh-key-file PATH]`. It prints the VMA's settings as the environment
// variables the vma reads. The NKey seed goes into -seed-out (mode 0600)
// when given, else it is printed for the operator to put in a file on the
// VMA. With an SSH key it also prints the key's authorized_keys line.
func vmaAdd(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma vma add", &cfg, stderr)
	id := fs.String("id", "", "VMA id (required): letters, digits, '-', '_'")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS URL to give the VMA (through its tunnel)")
	apiURL := fs.String("api-url", "http://localhost:8082", "OMA API URL to give the VMA")
	tunnelURL := fs.String("tunnel", "", "the VMA's SSH tunnel to this OMA, ssh://godwit@oma.example.com:22, to print with its settings")
	seedOut := fs.String("seed-out", "", "write the VMA's NATS NKey seed to this file (mode 0600) instead of printing it")
	sshKey := fs.String("ssh-key", "", `the VMA's SSH public key, "ssh-ed25519 AAAA... comment" (ed25519, or RSA of 3072 bits or more)`)
	sshKeyFile := fs.String("ssh-key-file", "", "file holding the VMA's SSH public key (instead of -ssh-key)")
	apiPort := fs.Int("api-port", 0, "OMA loopback port to forward the VMA's API to (default: the lowest free one from 9081); never one of the OMA's own (-api-addr, -nats-addr, -sshd-port, -nbd-ports)")
	fs.StringVar(&cfg.apiAddr, "api-addr", appliance.DefaultAPIAddr, "the OMA's API listen address (its port is no VMA's)")
	declareForwardFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("vma add: -id is required")
	}
	if *tunnelURL != "" {
		if u, err := url.Parse(*tunnelURL); err != nil || u.Scheme != "ssh" || u.Hostname() == "" || u.User.Username() == "" {
			return fmt.Errorf("vma add: -tunnel %q: want ssh://user@host[:port]", *tunnelURL)
		}
	}
	key, err := readSSHKey(*sshKey, *sshKeyFile)
	if err != nil {
		return fmt.Errorf("vma add: %w", err)
	}
	fw, err := cfg.forwards()
	if err != nil {
		return fmt.Errorf("vma add: %w", err)
	}
	own, err := cfg.ownPorts()
	if err != nil {
		return fmt.Errorf("vma add: %w", err)
	}
	pool, perVMA, err := cfg.share()
	if err != nil {
		return fmt.Errorf("vma add: %w", err)
	}
	if *seedOut != "" {
		// Refuse an existing file before registering: a VMA registered
		// without its seed saved would have to be removed again.
		if _, err := os.Lstat(*seedOut); err == nil {
			return fmt.Errorf("vma add: -seed-out %s exists: remove it or name another file", *seedOut)
		}
	}
	st, err := appliance.OpenStore(cfg.state())
	if err != nil {
		return fmt.Errorf("%w (on a running OMA use POST /api/v1/vmas)", err)
	}
	defer st.Close()
	cred, err := vmas.Register(st, vmas.Registration{ID: *id, SSHPublicKey: key, APIPort: *apiPort, OMAPorts: own, NBDPool: pool, NBDPortsPerVMA: perVMA}, time.Now())
	if err != nil {
		return err
	}
	env := func(flagName, value string) string { return flagconf.EnvName(flagName) + "=" + value + "\n" }
	out := fmt.Sprintf("# VMA %s: these are the vma's settings as environment variables.\n", cred.ID) +
		env("id", cred.ID) + env("nats-url", *natsURL) + env("oma-url", *apiURL) +
		fmt.Sprintf("# Its API is forwarded to 127.0.0.1:%d on the OMA.\n", cred.APIPort) +
		fmt.Sprintf("# Its jobs' exports are on the OMA's NBD ports %s, its share of the pool.\n", cred.NBDPorts)
	if *tunnelURL != "" {
		dir, err := cfg.socketDir()
		if err != nil {
			return fmt.Errorf("vma add: %w", err)
		}
		out += env("tunnel", *tunnelURL) + env("tunnel-listen", tunnels.SocketPath(dir, cred.ID)) +
			"# and the OMA's host key in the file " + flagconf.EnvName("tunnel-known-hosts") + " names (ssh-keyscan, checked by hand).\n"
	}
	if cred.SSHPublicKey != "" {
		line, err := vmas.AuthorizedKey(fw, store.VMA{ID: cred.ID, SSHPublicKey: cred.SSHPublicKey, APIPort: cred.APIPort, NBDPorts: &cred.NBDPorts})
		if err != nil {
			return fmt.Errorf("vma add: VMA %s is registered; its authorized_keys line (oma vma authorized-keys): %w", cred.ID, err)
		}
		out += "# Add this line to the OMA's /etc/godwit/authorized_keys (see scripts/sshd-godwit.conf):\n" + line + "\n"
	}
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

// readSSHKey returns the key given by -ssh-key or -ssh-key-file (at most
// one of them), "" when neither. A key that is not acceptable is an error
// naming its flag.
func readSSHKey(key, file string) (string, error) {
	switch {
	case key != "" && file != "":
		return "", errors.New("-ssh-key and -ssh-key-file: give one of them")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("-ssh-key-file: %w", err)
		}
		key = string(b)
		if _, err := authkeys.PublicKey(key); err != nil {
			return "", fmt.Errorf("-ssh-key-file %s: %w", file, err)
		}
	case key != "":
		if _, err := authkeys.PublicKey(key); err != nil {
			return "", fmt.Errorf("-ssh-key: %w", err)
		}
	}
	return key, nil
}

// vmaAuthorizedKeys implements `oma vma authorized-keys`: it prints the
// authorized_keys line of every registered VMA that has an SSH key, for the
// OMA's sshd file.
func vmaAuthorizedKeys(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma vma authorized-keys", &cfg, stderr)
	declareForwardFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	fw, err := cfg.forwards()
	if err != nil {
		return fmt.Errorf("vma authorized-keys: %w", err)
	}
	st, err := appliance.OpenStore(cfg.state())
	if err != nil {
		return fmt.Errorf("%w (on a running OMA each VMA's authorized_key is in GET /api/v1/vmas)", err)
	}
	defer st.Close()
	lines, err := vmas.AuthorizedKeys(st, fw)
	if err != nil {
		return fmt.Errorf("vma authorized-keys: %w", err)
	}
	out := "# godwit VMAs: the OMA's sshd authorized_keys file (oma vma authorized-keys)\n"
	for _, l := range lines {
		out += l + "\n"
	}
	_, err = io.WriteString(stdout, out)
	return err
}

// vmaNBDPorts implements `oma vma nbd-ports -id ID | -all`: it gives a VMA
// (-all: every VMA registered before shares) a share of the NBD port pool
// of -nbd-ports-per-vma ports and prints its new authorized_keys line,
// which replaces the old one in the sshd file.
func vmaNBDPorts(args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma vma nbd-ports", &cfg, stderr)
	id := fs.String("id", "", "the VMA to give a new share of the NBD port pool")
	all := fs.Bool("all", false, "give a share to every VMA that has none (registered before shares: it has the whole pool)")
	declareForwardFlags(fs, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*id == "") == !*all {
		return errors.New("vma nbd-ports: give -id ID or -all")
	}
	pool, perVMA, err := cfg.share()
	if err != nil {
		return fmt.Errorf("vma nbd-ports: %w", err)
	}
	fw, err := cfg.forwards()
	if err != nil {
		return fmt.Errorf("vma nbd-ports: %w", err)
	}
	st, err := appliance.OpenStore(cfg.state())
	if err != nil {
		return fmt.Errorf("%w (stop the OMA first: its jobs' ports change)", err)
	}
	defer st.Close()
	ids := []string{*id}
	if *all {
		ids = nil
		if err := st.View(func(tx *bbolt.Tx) error {
			vmas, err := store.VMAs(tx)
			for _, v := range vmas {
				if v.NBDPorts == nil {
					ids = append(ids, v.ID)
				}
			}
			return err
		}); err != nil {
			return fmt.Errorf("vma nbd-ports: read vmas: %w", err)
		}
		slices.Sort(ids)
	}
	out := ""
	for _, id := range ids {
		v, err := vmas.AssignNBDPorts(st, id, pool, perVMA, jobs.Active)
		if err != nil {
			return fmt.Errorf("vma nbd-ports: %w", err)
		}
		out += fmt.Sprintf("# VMA %s: NBD ports %s\n", v.ID, v.NBDPorts)
		line, err := vmas.AuthorizedKey(fw, v)
		if err != nil {
			return fmt.Errorf("vma nbd-ports: %w", err)
		}
		if line != "" {
			out += line + "\n"
		}
	}
	if len(ids) > 0 {
		out += "# Replace these VMAs' lines in the OMA's /etc/godwit/authorized_keys (oma vma authorized-keys prints them all).\n"
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

// watch implements `oma watch`: one line per job event, read as the
// observer, until interrupted.
func watch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("oma watch", &cfg, stderr)
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "the OMA's NATS")
	nkey := fs.String("nkey", "", "the observer's NKey seed file (default: observer.nk in -data)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *nkey == "" {
		*nkey = filepath.Join(cfg.dataDir, "observer.nk")
	}
	opt, err := nats.NkeyOptionFromSeed(*nkey)
	if err != nil {
		return fmt.Errorf("watch: observer key: %w (-nkey, or -data of the OMA)", err)
	}
	p := jobwatch.NewPrinter(stdout, nil)
	for {
		// Never give up reconnecting, not even on authorization errors (an
		// OMA that restarts refuses clients until it has loaded its users);
		// should nats.go close the connection for good all the same,
		// connect anew.
		lost, gone := context.WithCancel(ctx)
		nc, err := nats.Connect(*natsURL, opt, nats.Name("oma watch"), nats.MaxReconnects(-1),
			nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second), nats.IgnoreAuthErrorAbort(),
			nats.ClosedHandler(func(*nats.Conn) { gone() }),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Fprintln(stderr, "oma watch:", err) }))
		if err != nil {
			gone()
			return fmt.Errorf("watch: connect %s: %w", *natsURL, err)
		}
		err = jobwatch.Run(lost, nc, p)
		nc.Close()
		gone()
		if err != nil || ctx.Err() != nil {
			return err
		}
		fmt.Fprintln(stderr, "oma watch: the connection was closed for good: connecting again:", nc.LastError())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
