package vddk

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/godwit/godwit/secret"
)

// maxPassword bounds the password: it is written into a pipe before nbdkit
// starts, so it must fit the pipe's buffer (64 KiB on Linux).
const maxPassword = 4096

// Config says which disk to read and how to run nbdkit. Server, User,
// Password, Thumbprint, VM and File are required unless Plugin is set.
type Config struct {
	// LibDir is VMware's VDDK directory (the VMA's -vddk-libdir): the one
	// holding lib64/libvixDiskLib.so.*. Empty uses the plugin's default.
	LibDir string
	// Server is the vCenter host name or address.
	Server string
	// User is the vCenter user, such as "administrator@vsphere.local".
	User string
	// Password is User's password. It reaches nbdkit through a pipe and
	// prints as "REDACTED", so a Config can be logged whole.
	Password secret.String
	// Thumbprint is the SHA-1 fingerprint of vCenter's certificate as VDDK
	// wants it: 20 hex bytes separated by colons ("AB:CD:...").
	Thumbprint string
	// VM is the virtual machine's managed object reference, such as "vm-42".
	VM string
	// Snapshot is the snapshot's managed object reference, such as
	// "snapshot-7"; empty reads the VM's current disk.
	Snapshot string
	// File is the disk's backing file at the snapshot, such as
	// "[datastore1] vm/vm-000001.vmdk".
	File string
	// Transports lists VDDK's transport modes in order of preference,
	// such as "nbdssl:nbd" or "hotadd:nbdssl"; empty lets VDDK choose.
	Transports string

	// Nbdkit is the nbdkit binary; empty means "nbdkit" on PATH.
	Nbdkit string
	// Plugin, if not empty, replaces the vddk plugin and all its
	// parameters: nbdkit runs Plugin[0] with the parameters Plugin[1:]
	// (and password=-FD when Password is set). Tests use it to stand
	// another nbdkit plugin in for vddk; production leaves it nil.
	Plugin []string
	// Connections is the number of NBD connections to open when nbdkit
	// offers multi-conn; 0 means 1.
	Connections int
	// ReadyTimeout bounds Open's wait for nbdkit to serve when ctx has no
	// deadline; 0 means 2 minutes (logging in to vCenter can be slow).
	ReadyTimeout time.Duration
	// StopGrace is how long Close waits after SIGTERM before it kills
	// nbdkit; 0 means 5 seconds.
	StopGrace time.Duration
	// Logger receives supervision events; nil discards.
	Logger *slog.Logger
}

// withDefaults fills the zero fields that have defaults.
func (c Config) withDefaults() Config {
	if c.Nbdkit == "" {
		c.Nbdkit = "nbdkit"
	}
	if c.Connections < 1 {
		c.Connections = 1
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// plugin returns the name of the plugin nbdkit runs.
func (c Config) plugin() string {
	if len(c.Plugin) > 0 {
		return c.Plugin[0]
	}
	return "vddk"
}

// validate checks c's fields; an error names the field, never a value of
// Password.
func (c Config) validate() error {
	if strings.ContainsAny(c.Password.Reveal(), "\n\x00") {
		return fmt.Errorf("%w: Password holds a newline or NUL (nbdkit reads one line)", ErrConfig)
	}
	if c.Password.Len() > maxPassword {
		return fmt.Errorf("%w: Password is longer than %d bytes", ErrConfig, maxPassword)
	}
	if len(c.Plugin) > 0 {
		return nil
	}
	for _, f := range []struct{ name, value string }{
		{"Server", c.Server}, {"User", c.User}, {"Password", c.Password.Reveal()},
		{"Thumbprint", c.Thumbprint}, {"VM", c.VM}, {"File", c.File},
	} {
		if f.value == "" {
			return fmt.Errorf("%w: %s is required", ErrConfig, f.name)
		}
	}
	if !validThumbprint(c.Thumbprint) {
		return fmt.Errorf("%w: Thumbprint %q is not 20 colon-separated hex bytes", ErrConfig, c.Thumbprint)
	}
	for _, f := range []struct{ name, value string }{
		{"LibDir", c.LibDir}, {"Server", c.Server}, {"User", c.User}, {"VM", c.VM},
		{"Snapshot", c.Snapshot}, {"File", c.File}, {"Transports", c.Transports},
	} {
		if strings.ContainsAny(f.value, "\n\x00") {
			return fmt.Errorf("%w: %s holds a newline or NUL", ErrConfig, f.name)
		}
	}
	return nil
}

// validThumbprint reports whether s is 20 hex bytes separated by colons.
func validThumbprint(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 20 {
		return false
	}
	for _, p := range parts {
		if len(p) != 2 {
			return false
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return false
		}
	}
	return true
}

// Args returns nbdkit's arguments (without the binary) for cfg: serve on
// the Unix socket, stay in the foreground, die with the parent, read-only,
// and the vddk plugin with its parameters. The password is never among
// them: when cfg.Password is set, nbdkit reads it from passwordFD
// (password=-FD), a descriptor it inherits. Optional parameters that are
// empty are left out. Args does not validate cfg.
func Args(cfg Config, socket string, passwordFD int) []string {
	args := []string{"--unix", socket, "--foreground", "--exit-with-parent", "--readonly"}
	password := "password=-" + strconv.Itoa(passwordFD)
	if len(cfg.Plugin) > 0 {
		args = append(args, cfg.Plugin...)
		if !cfg.Password.Empty() {
			args = append(args, password)
		}
		return args
	}
	args = append(args, "vddk")
	add := func(key, value string) {
		if value != "" {
			args = append(args, key+"="+value)
		}
	}
	add("libdir", cfg.LibDir)
	add("server", cfg.Server)
	add("user", cfg.User)
	if !cfg.Password.Empty() {
		args = append(args, password)
	}
	add("thumbprint", cfg.Thumbprint)
	if cfg.VM != "" {
		args = append(args, "vm=moref="+cfg.VM)
	}
	add("snapshot", cfg.Snapshot)
	add("transports", cfg.Transports)
	add("file", cfg.File)
	return args
}
