package ike

import (
	"fmt"
)

// The responder side of Main Mode: MM1, MM3 and MM5 in, MM2, MM4 and MM6
// out. It always fakes the NAT-D hash of the initiator's address (like
// SoftEther) so NAT-T and UDP encapsulation are used.

func (mm *mainMode) reply(raw, out []byte) {
	mm.lastIn = append([]byte(nil), raw...)
	mm.lastOut = out
}

func (mm *mainMode) onMM1(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	saP := First(m.Payloads, PayloadSA)
	if saP == nil {
		return nil
	}
	p, err := ParseSA(saP.Body)
	if err != nil {
		r.log.Debug("ike: bad MM1 SA", "err", err)
		return nil
	}
	chosen, t := chooseP1(r, p, authMethod(r), nil)
	if chosen == nil {
		r.log.Warn("ike: no acceptable phase-1 transform")
		sa.sendCleartextNotify(NotifyNoProposalChosen)
		r.sas.remove(sa)
		return nil
	}
	if err := mm.choose(sa, t); err != nil {
		return err
	}
	if err := sa.acceptPhase1(m, chosen); err != nil {
		return err
	}
	sa.peerFrag = hasFragmentationVID(m.Payloads)
	mm.saiB = append([]byte(nil), saP.Body...)
	// MM2: SA with the chosen transform echoed, VIDs.
	b := newBuilder()
	b.add(PayloadSA, encodeSA(1, nil, []uint8{1}, [][]attrPair{p1AttrsAuth(t, sa.lifetime, authMethod(r))}))
	sa.addResponderVIDs(b)
	addFragmentationVID(r, b)
	out := sa.assemble(ExchangeIdentityProtection, 0, b, false)
	mm.reply(raw, out)
	mm.state = mmR2Sent
	sa.sendReliable(0, out, sa.floated, func() error { return fmt.Errorf("%w: no MM3", ErrTimeout) })
	return nil
}

func (mm *mainMode) onMM3(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	ke := First(m.Payloads, PayloadKE)
	ni := First(m.Payloads, PayloadNonce)
	if ke == nil || ni == nil || len(ni.Body) < 8 || len(ni.Body) > 256 {
		return nil
	}
	if n, err := dhPublicLen(sa.chosen.Group); err != nil || len(ke.Body) != n {
		return nil
	}
	mm.gxi = append([]byte(nil), ke.Body...)
	mm.ni = append([]byte(nil), ni.Body...)
	mm.gxr = mm.dh.Public()
	nr, err := r.random(nonceLen)
	if err != nil {
		return err
	}
	mm.nr = nr
	if err := mm.deriveKeys(sa, mm.gxi); err != nil {
		r.log.Warn("ike: bad initiator KE", "err", err)
		return nil
	}
	b := newBuilder()
	b.add(PayloadKE, mm.gxr)
	b.add(PayloadNonce, mm.nr)
	addCertReqs(r, b)
	if sa.nat != natNone {
		// NAT-D of the initiator (destination) is random on purpose so the
		// initiator is always "behind NAT"; then our own address.
		fake, err := r.random(sa.suite.Size())
		if err != nil {
			return err
		}
		b.add(sa.nat.natdType(), fake)
		b.add(sa.nat.natdType(), sa.suite.NATD(sa.ckyI[:], sa.ckyR[:], r.local))
	}
	out := sa.assemble(ExchangeIdentityProtection, 0, b, false)
	mm.reply(raw, out)
	mm.state = mmR4Sent
	sa.sendReliable(0, out, sa.floated, func() error { return fmt.Errorf("%w: no MM5", ErrTimeout) })
	return nil
}

func (mm *mainMode) onMM5(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	if sa.nat != natNone {
		sa.floated = true
	}
	d, err := sa.decryptMsg(m)
	var idP *Payload
	if err == nil {
		idP = First(d.payloads, PayloadID)
	}
	if err != nil || idP == nil || (First(d.payloads, PayloadHash) == nil && First(d.payloads, PayloadSig) == nil) {
		sa.ack(0)
		sa.sendCleartextNotify(NotifyPayloadMalformed)
		return fmt.Errorf("%w: MM5 does not decrypt: PSK mismatch likely", ErrAuthFailed)
	}
	if err := r.auth.Verify(mm.proof(sa), true, idP.Body, d.payloads); err != nil {
		sa.ack(0)
		sa.sendCleartextNotify(NotifyInvalidHashInformation)
		return fmt.Errorf("%w: %s", err, authMismatchHint(r))
	}
	sa.ivs.set(0, d.nextIV)
	sa.ack(0)
	id := localIDFor(r)
	pt, proof := r.auth.Proof(mm.proof(sa), false, id)
	b := newBuilder()
	b.add(PayloadID, id)
	addCerts(r, b)
	b.add(pt, proof)
	out := sa.assemble(ExchangeIdentityProtection, 0, b, true) // advances the M-ID 0 IV to MM6's last block
	sa.ivs.freeze()
	mm.reply(raw, out)
	sa.write(out, sa.floated)
	r.log.Info("ike: phase 1 up (responder)", "suite", sa.chosen.String())
	return mm.established(sa)
}
