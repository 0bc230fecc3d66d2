package tokens

import (
	"fmt"
	"strings"
)

// Scope is what a token may do. Each scope includes the ones before it:
//
//   - read: every GET but the token list;
//   - operate: also discovery and replication jobs (create, start, cancel);
//   - admin: also tokens and VMAs (and, later, vCenters), and the NBD export
//     names in job answers.
type Scope string

// The scopes, from least to most.
const (
	Read    Scope = "read"
	Operate Scope = "operate"
	Admin   Scope = "admin"
)

// DefaultScope is the scope of a token created without one: the day-to-day
// work of a migration (discovery, jobs). Admin, which can make tokens and
// register VMAs, is given only when asked for, so a token handed to a
// script can make no tokens and register no VMA.
const DefaultScope = Operate

// Scopes lists every scope, from least to most.
var Scopes = []Scope{Read, Operate, Admin}

// rank orders the scopes; 0 is no scope.
func (s Scope) rank() int {
	for i, v := range Scopes {
		if s == v {
			return i + 1
		}
	}
	return 0
}

// Allows reports whether a token of scope s may do what needs scope need.
func (s Scope) Allows(need Scope) bool { return s.rank() >= need.rank() && need.rank() > 0 }

// ParseScope returns the scope named s (without case); "" is
// DefaultScope. Any other name is an error wrapping ErrInvalidScope.
func ParseScope(s string) (Scope, error) {
	if s == "" {
		return DefaultScope, nil
	}
	sc := Scope(strings.ToLower(s))
	if sc.rank() == 0 {
		return "", fmt.Errorf("scope %q: want read, operate or admin: %w", s, ErrInvalidScope)
	}
	return sc, nil
}

// scopeOf is the scope of a stored token: tokens from before scopes have
// none, and were admin tokens in effect; they stay so (MigrateScopes
// writes it down).
func scopeOf(stored string) Scope {
	if stored == "" {
		return Admin
	}
	return Scope(stored)
}
