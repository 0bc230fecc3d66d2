package tokens

import "errors"

// ErrInvalidName is returned for a token name that is not 1 to 64
// letters, digits, '.', '-' or '_'.
var ErrInvalidName = errors.New("invalid token name")

// ErrExists is returned when a token of that name exists already.
var ErrExists = errors.New("token name taken")

// ErrNotFound is returned for a token name that does not exist.
var ErrNotFound = errors.New("no such token")

// ErrInvalidScope is returned for a scope that is not read, operate or admin.
var ErrInvalidScope = errors.New("invalid token scope")
