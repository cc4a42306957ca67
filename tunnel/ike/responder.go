package ike

import (
	"context"
)

// Responder is the server side of Main Mode and Quick Mode for one
// initiator. It always fakes the NAT-D hash of the initiator's address (like
// SoftEther) so NAT-T and UDP encapsulation are used.
type Responder struct {
	r *runner
}

// NewResponder validates cfg and returns a Responder that sends through tr.
func NewResponder(cfg ResponderConfig, tr Transport) (*Responder, error) {
	auth, err := responderAuth(cfg)
	if err != nil {
		return nil, err
	}
	e, err := newRunner(false, auth, cfg.LocalAddr, cfg.Clock, cfg.Logger, cfg.Rand, tr)
	if err != nil {
		return nil, err
	}
	e.fragSize = cfg.FragmentSize
	if a, ok := auth.(*rsaAuth); ok {
		a.now = e.clk.Now
	}
	e.p1Offer, e.p2Offer, e.reqPFS = cfg.Phase1, cfg.Phase2, cfg.RequirePFS
	e.p2LifeKB = cfg.Phase2LifeKilobytes
	e.prepareInbound = cfg.PrepareInbound
	if err := e.setIdentities(cfg.Mode, cfg.LocalID, cfg.RemoteID); err != nil {
		return nil, err
	}
	if e.p1Offer == nil {
		e.p1Offer = DefaultPhase1
	}
	if e.p2Offer == nil {
		e.p2Offer = DefaultPhase2
	}
	return &Responder{r: e}, nil
}

// HandlePacket queues one received ISAKMP message; it never blocks.
func (r *Responder) HandlePacket(msg []byte) { r.r.handlePacket(msg) }

// Dropped reports how many messages HandlePacket dropped on a full queue.
func (r *Responder) Dropped() uint64 { return r.r.dropped.Load() }

// Events returns the buffered event channel.
func (r *Responder) Events() <-chan Event { return r.r.events }

// Run serves the initiator until ctx ends (then it deletes its SAs and
// returns nil), the initiator deletes the ISAKMP SA (ErrDeleted) or
// authentication fails (ErrAuthFailed).
func (r *Responder) Run(ctx context.Context) error {
	return r.r.run(ctx, nil)
}

// DeleteISAKMPSA deletes the ISAKMP SA but leaves its ESP SAs up, as a
// server does when the IKE SA's lifetime ends; Run returns nil after it. The
// test server uses it to inject that event. It waits for Run to take the
// request, or for ctx to end.
func (r *Responder) DeleteISAKMPSA(ctx context.Context) error {
	return r.r.command(ctx, r.r.deleteISAKMP)
}

// DeleteChildSAs deletes every ESP SA, telling the peer (RFC 2409 §5.7), as
// a server does when its administrator takes the connection's IPsec SA down
// but keeps the ISAKMP SA. The test server uses it to inject that fault. It
// waits for Run to take the request, or for ctx to end.
func (r *Responder) DeleteChildSAs(ctx context.Context) error {
	return r.r.command(ctx, func() {
		if sa := r.r.sas.current(); sa != nil {
			sa.deleteChildren(true)
		}
	})
}

// StartQuickMode negotiates a new ESP SA from the server side, replacing
// the newest one (a server-initiated rekey, RFC 2409 §5.5). The test server
// uses it to rekey at any moment, even while the client is still coming up.
// It waits for Run to take the request, or for ctx to end.
func (r *Responder) StartQuickMode(ctx context.Context) error {
	return r.r.command(ctx, func() {
		sa := r.r.sas.current()
		if sa == nil {
			return
		}
		var old uint32
		if n := len(sa.children); n > 0 {
			old = sa.children[n-1].sa.Inbound.SPI
		}
		if err := sa.startQM(old); err != nil {
			r.r.log.Warn("ike: cannot start a quick mode", "err", err)
		}
	})
}

// chooseP1 is a phase-1 responder's choice (MM1, AM1): the first transform
// of the initiator's SA, in its order, that has the Authentication Method
// method, is in our offer and passes fits (nil: any), with its decoded form;
// nil if there is none.
func chooseP1(r *runner, p *SA, method uint64, fits func(Phase1Transform) bool) (*Transform, Phase1Transform) {
	for _, pr := range p.Proposals {
		if pr.Protocol != 1 {
			continue
		}
		for i := range pr.Transforms {
			c, ok := p1FromTransformAuth(&pr.Transforms[i], method)
			if ok && containsP1(r.p1Offer, c) && (fits == nil || fits(c)) {
				return &pr.Transforms[i], c
			}
		}
	}
	return nil, Phase1Transform{}
}

// acceptPhase1 is what a phase-1 responder does once it has chosen: note
// the initiator's NAT-T and DPD support from the first message's vendor
// IDs, pick our cookie, and take the lifetime the initiator proposed (ours
// if it gave none).
func (sa *ikeSA) acceptPhase1(first *Message, chosen *Transform) error {
	sa.nat, sa.peerDPD = vendorNAT(first.Payloads)
	c, err := sa.r.random(8)
	if err != nil {
		return err
	}
	copy(sa.ckyR[:], c)
	sa.lifetime = sa.r.p1Life
	if l := lifetimeOf(chosen.Attrs, attrLifeType, attrLifeDur); l > 0 {
		sa.lifetime = l
	}
	return nil
}

// addResponderVIDs adds the vendor IDs of a phase-1 responder's first
// message: the NAT-T variant the initiator announced, and DPD.
func (sa *ikeSA) addResponderVIDs(b *builder) {
	switch sa.nat {
	case natRFC:
		b.add(PayloadVendorID, vidRFC3947)
	case natDraft:
		b.add(PayloadVendorID, vidDraft02N)
	}
	b.add(PayloadVendorID, vidDPD)
}
