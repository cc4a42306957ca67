package ike

import (
	"bytes"
	"context"
	"crypto/hmac"
	"fmt"
)

type respState int

const (
	rWaitMM1 respState = iota
	rMM2Sent
	rMM4Sent
	rEstablished
)

// Responder is the server side of Main Mode and Quick Mode for one
// initiator. It always fakes the NAT-D hash of the initiator's address (like
// SoftEther) so NAT-T and UDP encapsulation are used.
type Responder struct {
	e     *engine
	state respState
}

// NewResponder validates cfg and returns a Responder that sends through tr.
func NewResponder(cfg ResponderConfig, tr Transport) (*Responder, error) {
	e, err := newEngine(false, cfg.PSK, cfg.LocalAddr, cfg.Clock, cfg.Logger, cfg.Rand, tr)
	if err != nil {
		return nil, err
	}
	e.p1Offer, e.p2Offer, e.reqPFS = cfg.Phase1, cfg.Phase2, cfg.RequirePFS
	if e.p1Offer == nil {
		e.p1Offer = DefaultPhase1
	}
	if e.p2Offer == nil {
		e.p2Offer = DefaultPhase2
	}
	return &Responder{e: e}, nil
}

// HandlePacket queues one received ISAKMP message; it never blocks.
func (r *Responder) HandlePacket(msg []byte) { r.e.handlePacket(msg) }

// Dropped reports how many messages HandlePacket dropped on a full queue.
func (r *Responder) Dropped() uint64 { return r.e.dropped.Load() }

// Events returns the buffered event channel.
func (r *Responder) Events() <-chan Event { return r.e.events }

// Run serves the initiator until ctx ends (then it deletes its SAs and
// returns nil), the initiator deletes the ISAKMP SA (ErrDeleted) or
// authentication fails (ErrAuthFailed).
func (r *Responder) Run(ctx context.Context) error {
	return r.e.run(ctx, nil, r.handleMM)
}

// DeleteISAKMPSA deletes the ISAKMP SA but leaves its ESP SAs up, as a
// server does when the IKE SA's lifetime ends; Run returns nil after it. The
// test server uses it to inject that event. It waits for Run to take the
// request, or for ctx to end.
func (r *Responder) DeleteISAKMPSA(ctx context.Context) error {
	select {
	case r.e.do <- r.e.deleteISAKMP:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeleteChildSAs deletes every ESP SA, telling the peer (RFC 2409 §5.7), as
// a server does when its administrator takes the connection's IPsec SA down
// but keeps the ISAKMP SA. The test server uses it to inject that fault. It
// waits for Run to take the request, or for ctx to end.
func (r *Responder) DeleteChildSAs(ctx context.Context) error {
	select {
	case r.e.do <- func() { r.e.deleteChildren(true) }:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Responder) handleMM(m *Message, raw []byte) error {
	e := r.e
	if e.mmLastIn != nil && bytes.Equal(raw, e.mmLastIn) {
		if e.mmLastOut != nil {
			e.write(e.mmLastOut, e.floated)
		}
		return nil
	}
	switch r.state {
	case rWaitMM1:
		if m.Flags&FlagEncryption != 0 || m.RCookie != ([8]byte{}) {
			return nil
		}
		return r.onMM1(m, raw)
	case rMM2Sent:
		if m.Flags&FlagEncryption != 0 || m.ICookie != e.ckyI {
			return nil
		}
		return r.onMM3(m, raw)
	case rMM4Sent:
		if m.Flags&FlagEncryption == 0 || m.ICookie != e.ckyI {
			return nil
		}
		return r.onMM5(m, raw)
	}
	return nil
}

func (r *Responder) reply(raw, out []byte) {
	e := r.e
	e.mmLastIn = append([]byte(nil), raw...)
	e.mmLastOut = out
}

func (r *Responder) onMM1(m *Message, raw []byte) error {
	e := r.e
	saP := First(m.Payloads, PayloadSA)
	if saP == nil {
		return nil
	}
	sa, err := ParseSA(saP.Body)
	if err != nil {
		e.log.Debug("ike: bad MM1 SA", "err", err)
		return nil
	}
	e.ckyI = m.ICookie
	var chosen *Transform
	var t Phase1Transform
	for _, p := range sa.Proposals {
		if p.Protocol != 1 {
			continue
		}
		for i := range p.Transforms {
			if c, ok := p1FromTransform(&p.Transforms[i]); ok && containsP1(e.p1Offer, c) {
				chosen, t = &p.Transforms[i], c
				break
			}
		}
		if chosen != nil {
			break
		}
	}
	if chosen == nil {
		e.log.Warn("ike: no acceptable phase-1 transform")
		e.sendCleartextNotify(NotifyNoProposalChosen)
		e.ckyI = [8]byte{}
		return nil
	}
	if err := e.choosePhase1(t); err != nil {
		return err
	}
	e.nat, e.dpd = vendorNAT(m.Payloads)
	c, err := e.random(8)
	if err != nil {
		return err
	}
	copy(e.ckyR[:], c)
	e.saiB = append([]byte(nil), saP.Body...)
	if l := lifetimeOf(chosen.Attrs, attrLifeType, attrLifeDur); l > 0 {
		e.p1Life = l
	}
	// MM2: SA with the chosen transform echoed, VIDs.
	b := newBuilder()
	b.add(PayloadSA, encodeSA(1, nil, []uint8{1}, [][]attrPair{p1Attrs(t, e.p1Life)}))
	switch e.nat {
	case natRFC:
		b.add(PayloadVendorID, vidRFC3947)
	case natDraft:
		b.add(PayloadVendorID, vidDraft02N)
	}
	b.add(PayloadVendorID, vidDPD)
	out := e.assemble(ExchangeIdentityProtection, 0, b, false)
	r.reply(raw, out)
	r.state = rMM2Sent
	e.sendReliable(0, out, false, func() error { return fmt.Errorf("%w: no MM3", ErrTimeout) })
	return nil
}

func (r *Responder) onMM3(m *Message, raw []byte) error {
	e := r.e
	ke := First(m.Payloads, PayloadKE)
	ni := First(m.Payloads, PayloadNonce)
	if ke == nil || ni == nil || len(ni.Body) < 8 || len(ni.Body) > 256 || len(ke.Body) != e.dh.Group().PublicLen() {
		return nil
	}
	e.gxi = append([]byte(nil), ke.Body...)
	e.ni = append([]byte(nil), ni.Body...)
	e.gxr = e.dh.Public()
	nr, err := e.random(nonceLen)
	if err != nil {
		return err
	}
	e.nr = nr
	if err := e.setupPhase1Keys(e.gxi); err != nil {
		e.log.Warn("ike: bad initiator KE", "err", err)
		return nil
	}
	b := newBuilder()
	b.add(PayloadKE, e.gxr)
	b.add(PayloadNonce, e.nr)
	if e.nat != natNone {
		// NAT-D of the initiator (destination) is random on purpose so the
		// initiator is always "behind NAT"; then our own address.
		fake, err := e.random(e.suite.Size())
		if err != nil {
			return err
		}
		b.add(e.nat.natdType(), fake)
		b.add(e.nat.natdType(), e.suite.NATD(e.ckyI[:], e.ckyR[:], e.local))
	}
	out := e.assemble(ExchangeIdentityProtection, 0, b, false)
	r.reply(raw, out)
	r.state = rMM4Sent
	e.sendReliable(0, out, false, func() error { return fmt.Errorf("%w: no MM5", ErrTimeout) })
	return nil
}

func (r *Responder) onMM5(m *Message, raw []byte) error {
	e := r.e
	if e.nat != natNone {
		e.floated = true
	}
	d, err := e.decryptMsg(m)
	var idP, hP *Payload
	if err == nil {
		idP, hP = First(d.payloads, PayloadID), First(d.payloads, PayloadHash)
	}
	if err != nil || idP == nil || hP == nil {
		e.ack(0)
		e.sendCleartextNotify(NotifyPayloadMalformed)
		return fmt.Errorf("%w: MM5 does not decrypt: PSK mismatch likely", ErrAuthFailed)
	}
	want := e.suite.HashI(e.keys.SKEYID, e.gxi, e.gxr, e.ckyI[:], e.ckyR[:], e.saiB, idP.Body)
	if !hmac.Equal(hP.Body, want) {
		e.ack(0)
		e.sendCleartextNotify(NotifyInvalidHashInformation)
		return fmt.Errorf("%w: HASH_I does not verify: PSK mismatch likely", ErrAuthFailed)
	}
	e.ivs.set(0, d.nextIV)
	e.ack(0)
	id := idFor(e.local, 0, 0).encode()
	b := newBuilder()
	b.add(PayloadID, id)
	b.add(PayloadHash, e.suite.HashR(e.keys.SKEYID, e.gxi, e.gxr, e.ckyI[:], e.ckyR[:], e.saiB, id))
	out := e.assemble(ExchangeIdentityProtection, 0, b, true) // advances the M-ID 0 IV to MM6's last block
	e.ivs.freeze()
	r.reply(raw, out)
	e.write(out, e.floated)
	e.p1Done = true
	r.state = rEstablished
	e.log.Info("ike: phase 1 up (responder)", "suite", e.chosen.String())
	e.emit(Phase1Up{Suite: e.chosen.String()})
	return nil
}
