package jobs

import (
	"math"
	"time"

	"github.com/godwit/godwit/vma/copier"
)

// Link is what a Runner learns of the network path to the OMA's exports
// (the tunnel measures it).
type Link interface {
	// MinRTT returns the least round-trip time measured on the path, or 0
	// while none is known.
	MinRTT() time.Duration
}

const (
	// DefaultLinkRate is Config.LinkRate's default: 1 Gbit/s, in bytes per
	// second.
	DefaultLinkRate = 125_000_000
	// channelWindow is what one NBD connection moves per round trip through
	// the tunnel: one SSH channel's window (OpenSSH's sshd offers 2 MiB).
	channelWindow = 2 << 20
	// windowCycles is how many round trips a channel's window takes to come
	// back, as measured through sshd at 100 ms on 1 Gbit/s (BenchmarkWAN):
	// sshd adjusts it as nbdkit takes the data, behind the link's queue.
	// 8 connections (1.25 windows per round trip) carried 88-93 MB/s, 16
	// (2.5) 105-117, the link's most.
	windowCycles = 2.5
	// flightBDPs is how many bandwidth-delay products of requests a disk
	// keeps in flight (at least the copier's depth). More only queues in
	// the link: at 100 ms on 1 Gbit/s 1.5 of them kept a standing queue, so
	// BBR never saw the link's own round trip again and drained it every
	// 10 s (ProbeRTT), and 3 overflowed it; 1.15 made neither.
	flightBDPs = 1.15
	// unknownRTTConnections is how many connections a disk opens while the
	// link's RTT is not known yet.
	unknownRTTConnections = 4
	// maxAutoConnections bounds the connections chosen from the RTT.
	maxAutoConnections = 16
	// maxAutoDepth bounds the requests in flight chosen from the RTT.
	maxAutoDepth = 64
)

// pipe is how one disk's copy fills the link: its NBD connections and the
// requests it keeps in flight.
type pipe struct {
	connections int
	depth       int
}

// pipeFor sizes a disk's copy for a link of rate bytes per second and the
// given round-trip time: enough connections that their channel windows
// cover windowCycles bandwidth-delay products, and enough requests in
// flight (of requestSize bytes, at least depth) to cover flightBDPs of them.
// An unknown RTT (0) gives unknownRTTConnections.
func pipeFor(rate int64, rtt time.Duration, depth, requestSize int) pipe {
	if depth == 0 {
		depth = copier.DefaultDepth
	}
	if requestSize == 0 {
		requestSize = copier.DefaultRequestSize
	}
	if rtt <= 0 {
		return pipe{connections: unknownRTTConnections, depth: depth}
	}
	bdp := float64(rate) * rtt.Seconds()
	conns := int(math.Ceil(windowCycles * bdp / channelWindow))
	d := int(math.Ceil(flightBDPs * bdp / float64(requestSize)))
	return pipe{
		connections: min(max(conns, 1), maxAutoConnections),
		depth:       max(depth, min(d, maxAutoDepth)),
	}
}

// pipe returns how the next disk's copy fills the link, with copies disk
// copies (this one included) under way on the runner: Config.Connections
// and Copy.Depth as configured, or chosen from the Link's RTT for an equal
// share of Config.LinkRate, so that several disks at once do not open
// several links' worth of channels and buffers between them. A copy keeps
// what it got when it started.
func (r *Runner) pipe(copies int) pipe {
	if r.cfg.Connections > 0 {
		return pipe{connections: r.cfg.Connections, depth: r.cfg.Copy.Depth}
	}
	return pipeFor(r.cfg.LinkRate/int64(max(copies, 1)), r.cfg.Link.MinRTT(), r.cfg.Copy.Depth, r.cfg.Copy.RequestSize)
}
