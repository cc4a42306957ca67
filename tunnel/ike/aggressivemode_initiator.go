package ike

import (
	"fmt"
)

// The initiator side of Aggressive Mode: AM1 out, AM2 in, AM3 out.

// startAggressiveMode makes a new initiator SA in the table and sends AM1:
// HDR, SA, KE, Ni, IDii, VID(RFC 3947), VID(draft-02\n), VID(draft-03),
// VID(draft-02), VID(DPD) (RFC 2409 §5.4, RFC 3947 §3.1, RFC 3706 §5.1),
// in strongSwan's payload order. The SA holds only transforms of one DH
// group: the KE is already in AM1 (aggressiveOffer).
func (r *runner) startAggressiveMode() (*ikeSA, error) {
	offer := aggressiveOffer(r.p1Offer)
	if len(offer) == 0 {
		return nil, fmt.Errorf("%w: no phase-1 transforms", ErrConfig)
	}
	sa := &ikeSA{r: r, initiator: true, am: &aggressiveMode{state: amI1Sent}, lifetime: r.p1Life}
	am := sa.am
	c, err := r.random(8)
	if err != nil {
		return nil, err
	}
	copy(sa.ckyI[:], c)
	dh, err := newDHKey(offer[0].Group, r.rand)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	am.dh, am.gxi = dh, dh.Public()
	if am.ni, err = r.random(nonceLen); err != nil {
		return nil, err
	}
	am.idI = r.ownIDPayload()
	if !r.sas.add(sa) {
		return nil, fmt.Errorf("%w: too many IKE SAs", ErrConfig)
	}
	b := newBuilder()
	b.add(PayloadSA, encodeP1SA(offer, r.p1Life))
	am.saiB = append([]byte(nil), b.buf[genericHeaderLength:]...)
	b.add(PayloadKE, am.gxi)
	b.add(PayloadNonce, am.ni)
	b.add(PayloadID, am.idI)
	for _, v := range [][]byte{vidRFC3947, vidDraft02N, vidDraft03, vidDraft02, vidDPD} {
		b.add(PayloadVendorID, v)
	}
	msg := sa.assemble(ExchangeAggressive, 0, b, false)
	r.log.Debug("ike: sending AM1 (Aggressive Mode)", "transforms", len(offer), "group", groupName(offer[0].Group))
	sa.sendReliable(0, msg, false, func() error {
		return fmt.Errorf("%w: no answer to AM1 (Aggressive Mode) from %s (server unreachable, or it silently rejected all of: %s, or our identity %s)",
			ErrTimeout, r.remote, p1List(offer), r.ownIdentity())
	})
	return sa, nil
}

func (r *runner) ownIdentity() string {
	id, err := identityOf(r.ownIDPayload())
	if err != nil {
		return "?"
	}
	return id.String()
}

func (am *aggressiveMode) onAM2(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	saP := First(m.Payloads, PayloadSA)
	ke := First(m.Payloads, PayloadKE)
	nr := First(m.Payloads, PayloadNonce)
	idP := First(m.Payloads, PayloadID)
	if saP == nil || ke == nil || nr == nil || idP == nil || len(nr.Body) < 8 || len(nr.Body) > 256 {
		r.log.Debug("ike: AM2 without SA/KE/nonce/ID, dropped")
		return nil
	}
	p, err := ParseSA(saP.Body)
	if err != nil || len(p.Proposals) != 1 || len(p.Proposals[0].Transforms) != 1 {
		return fmt.Errorf("%w: AM2 must choose exactly one transform", ErrNoProposalChosen)
	}
	offer := aggressiveOffer(r.p1Offer)
	tr := &p.Proposals[0].Transforms[0]
	t, ok := p1FromTransform(tr)
	if !ok || !containsP1(offer, t) {
		return fmt.Errorf("%w: server chose %s which we did not offer (offered %s)", ErrNoProposalChosen, t.short(), p1List(offer))
	}
	if n, err := dhPublicLen(t.Group); err != nil || len(ke.Body) != n {
		r.log.Debug("ike: AM2 KE has wrong length", "len", len(ke.Body))
		return nil
	}
	sa.nat, sa.peerDPD = vendorNAT(m.Payloads)
	if sa.nat == natNone {
		return fmt.Errorf("%w: no NAT-T vendor ID in AM2; ESP-in-UDP is impossible", ErrNATTUnsupported)
	}
	dh := am.dh
	if err := am.choose(sa, t); err != nil {
		return fmt.Errorf("%w: %v", ErrNoProposalChosen, err)
	}
	am.dh = dh // the key AM1 carried, not the fresh one choose made
	if l := lifetimeOf(tr.Attrs, attrLifeType, attrLifeDur); l > 0 && l < sa.lifetime {
		sa.lifetime = l
	}
	sa.ckyR = m.RCookie
	am.nr = append([]byte(nil), nr.Body...)
	am.gxr = append([]byte(nil), ke.Body...)
	if err := am.deriveKeys(sa, am.gxr); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	// The server's identity first: with --remote-id a wrong one is the
	// answer the user needs, whatever the hash says.
	if err := r.checkPeerID(idP.Body, "AM2"); err != nil {
		return err
	}
	if err := r.auth.Verify(am.proof(sa), false, idP.Body, m.Payloads); err != nil {
		return fmt.Errorf("%w in AM2", err)
	}
	if len(All(m.Payloads, sa.nat.natdType())) == 0 {
		r.log.Warn("ike: server sent no NAT-D payloads in AM2; floating to 4500 anyway")
	}
	for _, p := range All(m.Payloads, PayloadNotify) {
		if n, err := ParseNotify(p.Body); err == nil && n.Type == NotifyResponderLifetime {
			sa.onResponderLifetime(n)
		}
	}
	am.lastIn = append([]byte(nil), raw...)
	// AM3 (encrypted, to port 4500: RFC 3947 §4): HASH_I, NAT-D, NAT-D,
	// N(INITIAL-CONTACT).
	pt, proof := r.auth.Proof(am.proof(sa), true, am.idI)
	natdPeer, natdUs, err := sa.natdPair()
	if err != nil {
		return err
	}
	b := newBuilder()
	b.add(pt, proof)
	b.add(sa.nat.natdType(), natdPeer)
	b.add(sa.nat.natdType(), natdUs)
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyInitialContact, SPI: sa.cookies()}.encode())
	sa.floated = true
	out := sa.assemble(ExchangeAggressive, 0, b, !am.clearAM3) // encrypted: moves the M-ID 0 IV to AM3's last block
	sa.ivs.freeze()
	am.lastOut = out
	sa.ack(0)
	sa.write(out, true)
	am.state = amDone
	if id, err := identityOf(idP.Body); err == nil {
		r.log.Debug("ike: Aggressive Mode done", "suite", t.String(), "peer_id", id.String())
	}
	return am.established(sa)
}
