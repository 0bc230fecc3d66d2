package vddk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/godwit/godwit/secret"
)

const (
	password   = "pa55 w0rd=with;shell$chars"
	thumbprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
)

func fullConfig() Config {
	return Config{
		LibDir:     "/opt/vmware-vix-disklib-distrib",
		Server:     "vcenter.example.com",
		User:       "administrator@vsphere.local",
		Password:   secret.New(password),
		Thumbprint: thumbprint,
		VM:         "vm-42",
		Snapshot:   "snapshot-7",
		File:       "[datastore1] web01/web01-000001.vmdk",
		Transports: "nbdssl:nbd",
	}
}

func TestArgs(t *testing.T) {
	t.Parallel()
	minimal := fullConfig()
	minimal.LibDir, minimal.Snapshot, minimal.Transports = "", "", ""
	standIn := Config{Plugin: []string{"curl", "url=http://127.0.0.1/disk", "user=alice"}, Password: secret.New(password)}
	noPassword := Config{Plugin: []string{"file", "file=/tmp/disk.img"}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"full", fullConfig(), []string{
			"--unix", "/tmp/d/nbdkit.sock", "--foreground", "--exit-with-parent", "--readonly",
			"vddk",
			"libdir=/opt/vmware-vix-disklib-distrib",
			"server=vcenter.example.com",
			"user=administrator@vsphere.local",
			"password=-3",
			"thumbprint=" + thumbprint,
			"vm=moref=vm-42",
			"snapshot=snapshot-7",
			"transports=nbdssl:nbd",
			"file=[datastore1] web01/web01-000001.vmdk",
		}},
		{"no optional", minimal, []string{
			"--unix", "/tmp/d/nbdkit.sock", "--foreground", "--exit-with-parent", "--readonly",
			"vddk",
			"server=vcenter.example.com",
			"user=administrator@vsphere.local",
			"password=-3",
			"thumbprint=" + thumbprint,
			"vm=moref=vm-42",
			"file=[datastore1] web01/web01-000001.vmdk",
		}},
		{"stand-in with password", standIn, []string{
			"--unix", "/tmp/d/nbdkit.sock", "--foreground", "--exit-with-parent", "--readonly",
			"curl", "url=http://127.0.0.1/disk", "user=alice", "password=-3",
		}},
		{"stand-in without password", noPassword, []string{
			"--unix", "/tmp/d/nbdkit.sock", "--foreground", "--exit-with-parent", "--readonly",
			"file", "file=/tmp/disk.img",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Args(tc.cfg, "/tmp/d/nbdkit.sock", 3)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Args(%s) =\n%q\nwant\n%q", tc.name, got, tc.want)
			}
			for _, a := range got {
				if strings.Contains(a, password) {
					t.Errorf("Args(%s) has the password in %q", tc.name, a)
				}
			}
		})
	}
}

func TestPasswordRedacted(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "password", cfg.Password)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg, "password", cfg.Password)
	for _, s := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%s %q %v %#v", cfg.Password, cfg.Password, cfg.Password, cfg.Password),
		logged.String(),
	} {
		if strings.Contains(s, password) || strings.Contains(s, "pa55") {
			t.Errorf("the password is printed: %s", s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("no REDACTED in %s", s)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	with := func(f func(*Config)) Config {
		c := fullConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // "" means valid
	}{
		{"full", fullConfig(), ""},
		{"lower-case thumbprint", with(func(c *Config) { c.Thumbprint = strings.ToLower(thumbprint) }), ""},
		{"no server", with(func(c *Config) { c.Server = "" }), "Server"},
		{"no user", with(func(c *Config) { c.User = "" }), "User"},
		{"no password", with(func(c *Config) { c.Password = secret.String{} }), "Password"},
		{"no thumbprint", with(func(c *Config) { c.Thumbprint = "" }), "Thumbprint"},
		{"sha256 thumbprint", with(func(c *Config) { c.Thumbprint = thumbprint + ":00:11:22:33:44:55:66:77:88:99:AA:BB" }), "Thumbprint"},
		{"bad thumbprint", with(func(c *Config) { c.Thumbprint = strings.Replace(thumbprint, "AB", "ZZ", 1) }), "Thumbprint"},
		{"no vm", with(func(c *Config) { c.VM = "" }), "VM"},
		{"no file", with(func(c *Config) { c.File = "" }), "File"},
		{"newline in password", with(func(c *Config) { c.Password = secret.New(password + "\nsecond line") }), "Password"},
		{"long password", with(func(c *Config) { c.Password = secret.New(strings.Repeat(password, 1000)) }), "Password"},
		{"newline in file", with(func(c *Config) { c.File = "[ds] a\nb.vmdk" }), "File"},
		{"stand-in", Config{Plugin: []string{"file", "file=/x"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("validate(%s) = %v, want nil", tc.name, err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("validate(%s) = %v, want ErrConfig naming %s", tc.name, err, tc.field)
			}
			if strings.Contains(err.Error(), "pa55") {
				t.Errorf("validate(%s) error has the password: %v", tc.name, err)
			}
		})
	}
}

func TestPasswordUnmarshal(t *testing.T) {
	t.Parallel()
	var c struct{ Password secret.String }
	if err := json.Unmarshal([]byte(`{"Password":"hunter2"}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Password.Reveal() != "hunter2" {
		t.Errorf("unmarshalled password = %d bytes, want hunter2's 7", c.Password.Len())
	}
}
