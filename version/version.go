// Package version says which build of godwit a binary is: the string the
// Makefile stamps in with -ldflags, or else the VCS revision the go
// command recorded in the binary's build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// stamp is set at link time by the Makefile:
//
//	go build -ldflags "-X github.com/godwit/godwit/version.stamp=$(git describe --always --dirty)"
//
// It is never changed at run time.
var stamp string

// String returns the binary's version: the stamped string, else the VCS
// revision (12 digits, "-dirty" when the work tree had changes) from
// runtime/debug.ReadBuildInfo, else the module version ("(devel)" for a
// plain go build without VCS information).
func String() string {
	return of(stamp, debug.ReadBuildInfo)
}

// Line returns "NAME VERSION (GOVERSION)", what the -version flag prints.
func Line(name string) string {
	return fmt.Sprintf("%s %s (%s)", name, String(), runtime.Version())
}

func of(stamped string, read func() (*debug.BuildInfo, bool)) string {
	if stamped != "" {
		return stamped
	}
	bi, ok := read()
	if !ok {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		if bi.Main.Version != "" {
			return bi.Main.Version
		}
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
