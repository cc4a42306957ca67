package ike

import (
	"fmt"
)

// The initiator side of Main Mode: MM2, MM4 and MM6 in, MM3 and MM5 out.

func (mm *mainMode) onMM2(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	saP := First(m.Payloads, PayloadSA)
	if saP == nil {
		r.log.Debug("ike: MM2 without SA")
		return nil
	}
	p, err := ParseSA(saP.Body)
	if err != nil || len(p.Proposals) != 1 || len(p.Proposals[0].Transforms) != 1 {
		return fmt.Errorf("%w: MM2 must choose exactly one transform", ErrNoProposalChosen)
	}
	tr := &p.Proposals[0].Transforms[0]
	t, ok := p1FromTransformAuth(tr, authMethod(r))
	if !ok || !containsP1(r.p1Offer, t) {
		return fmt.Errorf("%w: server chose %s which we did not offer (offered %s)", ErrNoProposalChosen, t.short(), p1List(r.p1Offer))
	}
	sa.nat, sa.peerDPD = vendorNAT(m.Payloads)
	sa.peerFrag = hasFragmentationVID(m.Payloads)
	if sa.nat == natNone {
		return fmt.Errorf("%w: no NAT-T vendor ID in MM2; ESP-in-UDP is impossible", ErrNATTUnsupported)
	}
	if err := mm.choose(sa, t); err != nil {
		return fmt.Errorf("%w: %v", ErrNoProposalChosen, err)
	}
	if l := lifetimeOf(tr.Attrs, attrLifeType, attrLifeDur); l > 0 && l < sa.lifetime {
		sa.lifetime = l
	}
	sa.ckyR = m.RCookie
	mm.lastIn = append([]byte(nil), raw...)
	ni, err := r.random(nonceLen)
	if err != nil {
		return err
	}
	mm.ni, mm.gxi = ni, mm.dh.Public()
	// MM3: KE, Ni, NAT-D(peer as we address it), NAT-D(us) faked with
	// random bytes so the responder always detects a NAT and floats to
	// 4500 (strongSwan forceencaps, RFC 3947 §3.2).
	fake, err := r.random(sa.suite.Size())
	if err != nil {
		return err
	}
	b := newBuilder()
	b.add(PayloadKE, mm.gxi)
	b.add(PayloadNonce, mm.ni)
	addCertReqs(r, b)
	b.add(sa.nat.natdType(), sa.suite.NATD(sa.ckyI[:], sa.ckyR[:], r.remote))
	b.add(sa.nat.natdType(), fake)
	mm.state = mmI3Sent
	r.log.Debug("ike: MM2 accepted, sending MM3", "suite", t.String(), "natt", sa.nat, "peer_dpd", sa.peerDPD)
	sa.sendReliableN(0, sa.assemble(ExchangeIdentityProtection, 0, b, false), false, mm3Tries, func() error {
		return restartable{fmt.Errorf("%w: no answer to MM3 after %d tries (the server answered MM1)", ErrTimeout, mm3Tries)}
	})
	return nil
}

func (mm *mainMode) onMM4(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	ke := First(m.Payloads, PayloadKE)
	nr := First(m.Payloads, PayloadNonce)
	if ke == nil || nr == nil || len(nr.Body) < 8 || len(nr.Body) > 256 {
		r.log.Debug("ike: MM4 without KE/nonce")
		return nil
	}
	if n, err := dhPublicLen(sa.chosen.Group); err != nil || len(ke.Body) != n {
		r.log.Debug("ike: MM4 KE has wrong length", "len", len(ke.Body))
		return nil
	}
	if len(All(m.Payloads, sa.nat.natdType())) == 0 {
		r.log.Warn("ike: server sent no NAT-D payloads; floating to 4500 anyway")
	}
	mm.nr = append([]byte(nil), nr.Body...)
	mm.gxr = append([]byte(nil), ke.Body...)
	if err := mm.deriveKeys(sa, mm.gxr); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	mm.lastIn = append([]byte(nil), raw...)
	// MM5 (encrypted, port 4500): IDii, HASH_I, N(INITIAL-CONTACT).
	id := localIDFor(r)
	pt, proof := r.auth.Proof(mm.proof(sa), true, id)
	b := newBuilder()
	b.add(PayloadID, id)
	addCerts(r, b)
	b.add(pt, proof)
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyInitialContact, SPI: sa.cookies()}.encode())
	sa.floated = true
	mm.state = mmI5Sent
	sa.sendReliableN(0, sa.assemble(ExchangeIdentityProtection, 0, b, true), true, mm5Tries, func() error {
		return mm5GiveUp(r)
	})
	return nil
}

func (mm *mainMode) onMM6(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	d, err := sa.decryptMsg(m)
	if err != nil {
		return fmt.Errorf("%w: MM6 does not decrypt (%v): %s", ErrAuthFailed, err, authMismatchHint(r))
	}
	idP := First(d.payloads, PayloadID)
	if idP == nil {
		return fmt.Errorf("%w: MM6 without ID: %s", ErrAuthFailed, authMismatchHint(r))
	}
	if err := r.checkPeerID(idP.Body, "MM6"); err != nil {
		return err
	}
	if err := r.auth.Verify(mm.proof(sa), false, idP.Body, d.payloads); err != nil {
		if certAuthOf(r) != nil {
			return fmt.Errorf("%w (in MM6)", err)
		}
		return fmt.Errorf("%w in MM6: PSK mismatch likely", err)
	}
	sa.ivs.set(0, d.nextIV)
	sa.ivs.freeze()
	sa.ack(0)
	mm.lastIn = append([]byte(nil), raw...)
	for _, p := range All(d.payloads, PayloadNotify) { // Cisco puts RESPONDER-LIFETIME here
		if n, err := ParseNotify(p.Body); err == nil && n.Type == NotifyResponderLifetime {
			sa.onResponderLifetime(n)
		}
	}
	if id, err := ParseID(idP.Body); err == nil {
		r.log.Debug("ike: phase 1 up", "suite", sa.chosen.String(), "peer_id_type", id.Type, "peer_id", fmt.Sprintf("%x", id.Data))
	}
	return mm.established(sa)
}
