package vddk

import "errors"

var (
	// ErrNotInstalled is wrapped by the errors of Open and Check when
	// nbdkit, its vddk plugin or VMware's VDDK library is missing.
	ErrNotInstalled = errors.New("vddk not installed")
	// ErrConfig is wrapped by Open's errors about a Config that lacks a
	// required field or has a malformed one; the error names the field.
	ErrConfig = errors.New("bad vddk config")
	// ErrExited is wrapped by the errors of a Disk whose nbdkit has died;
	// the error carries nbdkit's exit status and the tail of its stderr.
	ErrExited = errors.New("nbdkit exited")
)
