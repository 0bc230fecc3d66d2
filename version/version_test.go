package version

import (
	"runtime/debug"
	"testing"
)

func TestOf(t *testing.T) {
	info := func(main string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: main}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tt := range []struct {
		name    string
		stamped string
		read    func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"stamped by the Makefile", "v0.3.0-4-g1a9eef4", info("(devel)", "vcs.revision", "1a9eef4c0ffee"), "v0.3.0-4-g1a9eef4"},
		{"vcs revision", "", info("(devel)", "vcs.revision", "1a9eef4c0ffee1234567890", "vcs.modified", "false"), "1a9eef4c0ffe"},
		{"vcs revision, dirty", "", info("(devel)", "vcs.revision", "1a9eef4c0ffee1234567890", "vcs.modified", "true"), "1a9eef4c0ffe-dirty"},
		{"no vcs information", "", info("(devel)"), "(devel)"},
		{"no build information", "", none, "unknown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := of(tt.stamped, tt.read); got != tt.want {
				t.Errorf("of(%q) = %q, want %q", tt.stamped, got, tt.want)
			}
		})
	}
}
