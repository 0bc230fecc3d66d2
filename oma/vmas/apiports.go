package vmas

import (
	"fmt"
	"net"
	"strconv"

	"github.com/godwit/godwit/oma/authkeys"
	"github.com/godwit/godwit/oma/fault"
	"github.com/godwit/godwit/oma/store"
)

// PortRange is one or more of the OMA's own ports, such as its API's or
// its NBD pool, which no VMA's API port may take.
type PortRange struct {
	// Name says what listens there: "API", "NATS", "sshd", "NBD port pool".
	Name        string
	First, Last int
}

// String names the range and what listens there, such as "NBD port pool 10100-10199".
func (r PortRange) String() string {
	if r.First == r.Last {
		return fmt.Sprintf("%s port %d", r.Name, r.First)
	}
	return fmt.Sprintf("%s %d-%d", r.Name, r.First, r.Last)
}

// checkOMAPorts refuses port when it is one of the OMA's own.
func checkOMAPorts(port int, own []PortRange) error {
	for _, r := range own {
		if port >= r.First && port <= r.Last {
			return fault.Errorf(fault.Conflict, "api_port", "API port %d is the OMA's own (its %s): choose another", port, r)
		}
	}
	return nil
}

// checkAPIPort refuses an API port asked for that cannot be one: 0 (the
// lowest free one) or 1024-65535.
func checkAPIPort(port int) error {
	if port < 0 || port > 65535 || (port > 0 && port < 1024) {
		return fault.Errorf(fault.Invalid, "api_port", "API port %d: want 1024-65535, or 0 for the lowest free one from %d", port, authkeys.FirstAPIPort)
	}
	return nil
}

// apiPortFree refuses port when a VMA of vmas has it.
func apiPortFree(vmas []store.VMA, port int) error {
	for _, v := range vmas {
		if v.APIPort == port {
			return fault.Errorf(fault.Conflict, "api_port", "API port %d is VMA %s's", port, v.ID)
		}
	}
	return nil
}

// freeAPIPort returns the lowest port from authkeys.FirstAPIPort that no
// VMA of vmas has, that is none of the OMA's own, and that no other
// process holds now (it would get what operators send to the VMA).
func freeAPIPort(vmas []store.VMA, own []PortRange) (int, error) {
	taken := map[int]bool{}
	for _, v := range vmas {
		taken[v.APIPort] = true
	}
	for p := authkeys.FirstAPIPort; p <= 65535; p++ {
		if !taken[p] && checkOMAPorts(p, own) == nil && checkUnheld(p) == nil {
			return p, nil
		}
	}
	return 0, fault.Errorf(fault.Unavailable, "id", "every API port from %d is taken", authkeys.FirstAPIPort)
}

// APIPortHost is where the OMA holds the VMAs' API ports (oma/tunnels).
const APIPortHost = "127.0.0.1"

// checkUnheld refuses port when another process on this machine holds it
// on APIPortHost: the OMA could not hold it for the VMA, and that process
// would get what operators send to the VMA.
func checkUnheld(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(APIPortHost, strconv.Itoa(port)))
	if err != nil {
		return fault.Errorf(fault.Conflict, "api_port", "API port %d is held by another process on the OMA's machine (%v): stop it, or choose another port", port, err)
	}
	return ln.Close()
}
