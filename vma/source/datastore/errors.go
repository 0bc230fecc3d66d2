package datastore

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrUnsupported is wrapped by Open's errors about a disk this source
	// cannot read: not a monolithic flat disk (sparse, SESparse, several
	// extents, raw device mapping, encrypted), or a backing that is a data
	// file rather than a descriptor.
	ErrUnsupported = errors.New("unsupported disk format")
	// ErrDescriptor is wrapped by Open's errors about a descriptor that is
	// too large or cannot be parsed, and about an extent whose size is not
	// the disk's capacity.
	ErrDescriptor = errors.New("bad disk descriptor")
	// ErrNotFound is matched (errors.Is) by a StatusError with status 404:
	// the datacenter, datastore or file does not exist.
	ErrNotFound = errors.New("not found")
	// ErrOutOfRange is wrapped by ReadAt's errors for a read that does not
	// lie within the disk.
	ErrOutOfRange = errors.New("read outside the disk")
)

// StatusError is an HTTP answer the datastore endpoint should not have
// given: a status other than the one expected, or a 206 whose Content-Range
// is not the range asked for. It never holds the session cookie.
type StatusError struct {
	// File is the datastore path read, such as "[ds] vm/vm-flat.vmdk".
	File string
	// Offset is the offset of the file the request started at.
	Offset int64
	// Code and Status are the response's status code and line.
	Code   int
	Status string
	// Detail says what was wrong when the status alone does not.
	Detail string
}

// Error returns "read FILE at offset N: STATUS[: DETAIL]".
func (e *StatusError) Error() string {
	s := fmt.Sprintf("read %s at offset %d: HTTP %s", e.File, e.Offset, e.Status)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is reports whether target is ErrNotFound and the status is 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Code == http.StatusNotFound
}
