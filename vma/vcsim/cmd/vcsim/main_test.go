package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestExitStatus: -h prints the usage and exits 0, -version prints the
// version and exits 0, neither starting the simulator; a bad flag or a
// stray argument exits 1, said on stderr.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name           string
		args           []string
		want           int
		stdout, stderr string
	}{
		{"help", []string{"-h"}, 0, "", "-datastore"},
		{"version", []string{"-version"}, 0, "vcsim ", ""},
		{"unknown flag", []string{"-bogus"}, 1, "", "vcsim: flag provided but not defined: -bogus"},
		{"stray argument", []string{"-vms", "2", "extra"}, 1, "", `vcsim: unexpected argument "extra"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := exitStatus(run(context.Background(), tt.args, &out, &errOut), &errOut)
			if code != tt.want || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("vcsim %v: exit %d, stdout %q, stderr %q; want exit %d, %q on stdout, %q on stderr", tt.args, code, out.String(), errOut.String(), tt.want, tt.stdout, tt.stderr)
			}
			if strings.Contains(errOut.String(), "help requested") || strings.Contains(errOut.String(), "vcsim ready") {
				t.Errorf("vcsim %v: stderr %q", tt.args, errOut.String())
			}
		})
	}
}
