package tunnel

import "time"

// Times is how long each step of Dial took, in the order they run. Each
// step starts when the one before it finished.
type Times struct {
	Phase1    time.Duration // IKE Main Mode: from the first packet to the ISAKMP SA (RFC 2409 §5)
	QuickMode time.Duration // Quick Mode to the ESP SA pair, including a retry with PFS (RFC 2409 §5.5)
	L2TP      time.Duration // L2TP tunnel and session: SCCRQ to ICCN sent (RFC 2661 §5.1)
	LCP       time.Duration // PPP link negotiation (RFC 1661 §3.2 Establish phase)
	Auth      time.Duration // PPP authentication: PAP, CHAP or MS-CHAPv2
	IPCP      time.Duration // PPP IPCP to an address (RFC 1332)
}

// stopwatch measures consecutive steps: lap returns the time since the
// previous lap (or since start) and starts the next step.
type stopwatch struct{ last time.Time }

func (s *stopwatch) start() { s.last = time.Now() }

func (s *stopwatch) lap() time.Duration {
	now := time.Now()
	d := now.Sub(s.last)
	s.last = now
	return d
}
