package vcenter

import (
	"net"
	"strings"
)

// AllowList lists the only vCenters a VMA may log in to, each a host or
// host:port: a host without a port allows any port; a vCenter named without
// a port means port 443. An empty list allows every vCenter.
type AllowList []string

// Permits reports whether l allows logging in to vcenter (host[:port]).
func (l AllowList) Permits(vcenter string) bool {
	if len(l) == 0 {
		return true
	}
	host, port, _ := hostPort(vcenter)
	for _, allowed := range l {
		h, p, hasPort := hostPort(allowed)
		if strings.EqualFold(h, host) && (!hasPort || p == port) {
			return true
		}
	}
	return false
}

// hostPort splits host[:port]; without a port, port is 443 (vCenter's)
// and hasPort is false.
func hostPort(s string) (host, port string, hasPort bool) {
	s = strings.TrimSpace(s)
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p, true
	}
	return strings.Trim(s, "[]"), "443", false
}
