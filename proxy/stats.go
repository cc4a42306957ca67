package proxy

import (
	"errors"
	"sync/atomic"
)

// ErrTunnelDown is the class of the errors of a dial that found the VPN
// tunnel down (a Dialer that reconnects reports it; the Stats count it).
var ErrTunnelDown = errors.New("the VPN tunnel is down (reconnecting)")

// Refusal is why a proxy turned a client's connection or request away.
type Refusal int

// Refusal reasons.
const (
	RefusedLimit      Refusal = iota // beyond the Limiter (--max-connections)
	RefusedAuth                      // missing or wrong proxy credentials
	RefusedRoutes                    // outside the routes, and others are refused
	RefusedTunnelDown                // the tunnel was down and did not come back in time
	RefusedDial                      // the destination could not be reached (refused, unreachable, DNS)
	NumRefusals
)

var refusalNames = [NumRefusals]string{"limit", "auth", "routes", "tunnel_down", "dial"}

// String is the reason's metric label.
func (r Refusal) String() string {
	if r < 0 || r >= NumRefusals {
		return "unknown"
	}
	return refusalNames[r]
}

// Stats counts one proxy's client connections. The zero value is ready;
// a nil *Stats counts nothing. Safe for concurrent use.
type Stats struct {
	accepted, closed atomic.Uint64
	refused          [NumRefusals]atomic.Uint64
}

// StatsSnapshot is what Stats counted.
type StatsSnapshot struct {
	Accepted uint64 // client connections accepted (not those refused by the limit)
	Open     uint64 // of those, still open
	Refused  [NumRefusals]uint64
}

// Snapshot returns the counts.
func (s *Stats) Snapshot() StatsSnapshot {
	if s == nil {
		return StatsSnapshot{}
	}
	closed := s.closed.Load()
	acc := s.accepted.Load()
	snap := StatsSnapshot{Accepted: acc, Open: acc - min(closed, acc)}
	for i := range snap.Refused {
		snap.Refused[i] = s.refused[i].Load()
	}
	return snap
}

func (s *Stats) accept() {
	if s != nil {
		s.accepted.Add(1)
	}
}

func (s *Stats) close() {
	if s != nil {
		s.closed.Add(1)
	}
}

func (s *Stats) refuse(r Refusal) {
	if s != nil {
		s.refused[r].Add(1)
	}
}

// refuseDial counts a failed dial by its cause.
func (s *Stats) refuseDial(err error) {
	switch {
	case errors.Is(err, ErrRefusedByRoutes):
		s.refuse(RefusedRoutes)
	case errors.Is(err, ErrTunnelDown):
		s.refuse(RefusedTunnelDown)
	default:
		s.refuse(RefusedDial)
	}
}
