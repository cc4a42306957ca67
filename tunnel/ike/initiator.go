package ike

import (
	"context"
	"fmt"
)

// Initiator is the client side: Main Mode PSK, then Quick Mode, then it
// serves Informational exchanges until its context ends. Its Run goroutine
// owns a table of IKE SAs: when the server deletes the IKE SA but keeps the
// IPsec SA, a new IKE SA is negotiated in place.
type Initiator struct {
	r *runner
}

// NewInitiator validates cfg and returns an Initiator that sends through tr.
func NewInitiator(cfg Config, tr Transport) (*Initiator, error) {
	auth, err := initiatorAuth(cfg)
	if err != nil {
		return nil, err
	}
	e, err := newRunner(true, auth, cfg.LocalAddr, cfg.Clock, cfg.Logger, cfg.Rand, tr)
	if err != nil {
		return nil, err
	}
	e.fragSize = cfg.FragmentSize
	e.prepareInbound = cfg.PrepareInbound
	if a, ok := auth.(*rsaAuth); ok {
		a.now = e.clk.Now
	}
	if !cfg.RemoteAddr.Addr().IsValid() {
		return nil, fmt.Errorf("%w: remote address not set", ErrConfig)
	}
	e.remote = cfg.RemoteAddr
	e.l2tpPort = cfg.L2TPPort
	if e.l2tpPort == 0 {
		e.l2tpPort = 1701
	}
	e.p1Offer, e.p2Offer = cfg.Phase1, cfg.Phase2
	if e.p1Offer == nil {
		e.p1Offer = DefaultPhase1
	}
	if e.p2Offer == nil {
		e.p2Offer = DefaultPhase2
	}
	if len(e.p1Offer) == 0 || len(e.p2Offer) == 0 || len(e.p1Offer) > 64 || len(e.p2Offer) > 64 {
		return nil, fmt.Errorf("%w: need 1..64 phase-1 and phase-2 transforms", ErrConfig)
	}
	for _, t := range e.p1Offer {
		if _, _, err := p1KeyLen(t.Enc, t.KeyBits); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if _, err := dhPublicLen(t.Group); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	for _, a := range e.p2Offer {
		if _, _, err := a.KeymatLen(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	switch cfg.PFS {
	case PFSAuto, PFSOff:
	case PFSOn:
		e.pfsNow = true
	default:
		return nil, fmt.Errorf("%w: unknown PFS mode %d", ErrConfig, cfg.PFS)
	}
	e.pfs = cfg.PFS
	if err := e.setIdentities(cfg.Mode, cfg.LocalID, cfg.RemoteID); err != nil {
		return nil, err
	}
	if e.mode == ModeAggressive {
		warnAggressive(e.log)
	}
	e.dpd.interval, e.dpd.activity = cfg.DPDInterval, cfg.PeerActivity
	e.p1Life, e.p2Life = cfg.Phase1Lifetime, cfg.Phase2Lifetime
	if e.p1Life <= 0 {
		e.p1Life = defaultP1Life
	}
	if e.p2Life <= 0 {
		e.p2Life = defaultP2Life
	}
	return &Initiator{r: e}, nil
}

// HandlePacket queues one received ISAKMP message (non-ESP marker already
// stripped); ownership of msg passes to the Initiator. It never blocks: when
// the queue is full the message is dropped and counted (Dropped).
func (s *Initiator) HandlePacket(msg []byte) { s.r.handlePacket(msg) }

// Dropped reports how many messages HandlePacket dropped on a full queue.
func (s *Initiator) Dropped() uint64 { return s.r.dropped.Load() }

// RekeyChild asks for a new IPsec SA in place of the one that sends with
// outboundSPI, make-before-break, as when its lifetime runs out. The data
// path calls it when the SA's sequence numbers run low; it never blocks (a
// request while four are queued is dropped: the Run goroutine is rekeying
// already).
func (s *Initiator) RekeyChild(outboundSPI uint32) {
	select {
	case s.r.rekeyReq <- outboundSPI:
	default:
	}
}

// Events returns the buffered event channel.
func (s *Initiator) Events() <-chan Event { return s.r.events }

// Run negotiates Main Mode and Quick Mode, emits Phase1Up and ChildSAUp,
// answers DPD and handles Deletes, rekeys the ESP SA before it expires, and
// negotiates a new IKE SA when the server deletes the old one alone.
// When ctx ends after phase 1 it sends Deletes (ESP SAs, then the ISAKMP SA)
// and returns nil. Fatal conditions return wrapped ErrTimeout,
// ErrNoProposalChosen, ErrAuthFailed, ErrPhase2Failed, ErrDeleted or
// ErrNATTUnsupported.
func (s *Initiator) Run(ctx context.Context) error {
	return s.r.run(ctx, func() error {
		_, err := s.r.startPhase1()
		return err
	})
}
