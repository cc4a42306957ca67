package ike

import (
	"fmt"
)

// The responder side of Aggressive Mode: AM1 in, AM2 out, AM3 in. Like
// the Main Mode responder it fakes the NAT-D hash of the initiator's
// address, so NAT-T and UDP encapsulation are always used.

func (am *aggressiveMode) onAM1(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	saP := First(m.Payloads, PayloadSA)
	ke := First(m.Payloads, PayloadKE)
	ni := First(m.Payloads, PayloadNonce)
	idP := First(m.Payloads, PayloadID)
	if saP == nil || ke == nil || ni == nil || idP == nil || len(ni.Body) < 8 || len(ni.Body) > 256 || len(idP.Body) < 4 {
		r.log.Debug("ike: AM1 without SA/KE/nonce/ID, dropped")
		r.sas.remove(sa)
		return nil
	}
	p, err := ParseSA(saP.Body)
	if err != nil {
		r.log.Debug("ike: bad AM1 SA", "err", err)
		r.sas.remove(sa)
		return nil
	}
	// The KE in AM1 fixes the group: a transform of another group cannot be
	// chosen (RFC 2409 §5.4).
	chosen, t := chooseP1(r, p, authPSK, func(c Phase1Transform) bool {
		n, err := dhPublicLen(c.Group)
		return err == nil && len(ke.Body) == n
	})
	if chosen == nil {
		r.log.Warn("ike: no acceptable phase-1 transform in AM1")
		sa.sendCleartextNotify(NotifyNoProposalChosen)
		r.sas.remove(sa)
		return nil
	}
	if peer, err := identityOf(idP.Body); err == nil && r.remoteID != nil && !r.remoteID.Equal(peer) {
		r.log.Warn("ike: AM1 from an unexpected identity", "id", peer.String())
		sa.sendCleartextNotify(NotifyInvalidIDInformation)
		r.sas.remove(sa)
		return nil
	}
	if err := am.choose(sa, t); err != nil {
		return err
	}
	if err := sa.acceptPhase1(m, chosen); err != nil {
		return err
	}
	am.saiB = append([]byte(nil), saP.Body...)
	am.idI = append([]byte(nil), idP.Body...)
	am.gxi = append([]byte(nil), ke.Body...)
	am.ni = append([]byte(nil), ni.Body...)
	am.gxr = am.dh.Public()
	if am.nr, err = r.random(nonceLen); err != nil {
		return err
	}
	if err := am.deriveKeys(sa, am.gxi); err != nil {
		r.log.Warn("ike: bad initiator KE in AM1", "err", err)
		r.sas.remove(sa)
		return nil
	}
	idR := r.ownIDPayload()
	pt, proof := r.auth.Proof(am.proof(sa), false, idR)
	// AM2: SA (the chosen transform), KE, Nr, IDir, HASH_R, VIDs, NAT-D x2
	// (strongSwan's aggressive_r_order puts HASH last; the order is free).
	b := newBuilder()
	b.add(PayloadSA, encodeSA(1, nil, []uint8{1}, [][]attrPair{p1Attrs(t, sa.lifetime)}))
	b.add(PayloadKE, am.gxr)
	b.add(PayloadNonce, am.nr)
	b.add(PayloadID, idR)
	b.add(pt, proof)
	sa.addResponderVIDs(b)
	if sa.nat != natNone {
		natdPeer, natdUs, err := sa.natdPair()
		if err != nil {
			return err
		}
		b.add(sa.nat.natdType(), natdPeer)
		b.add(sa.nat.natdType(), natdUs)
	}
	out := sa.assemble(ExchangeAggressive, 0, b, false)
	am.lastIn, am.lastOut = append([]byte(nil), raw...), out
	am.state = amR2Sent
	sa.sendReliable(0, out, sa.floated, func() error { return fmt.Errorf("%w: no AM3", ErrTimeout) })
	return nil
}

// onAM3 verifies HASH_I, in an encrypted AM3 (Libreswan, us) or a clear
// one (strongSwan).
func (am *aggressiveMode) onAM3(sa *ikeSA, m *Message, raw []byte) error {
	r := sa.r
	if sa.nat != natNone {
		sa.floated = true
	}
	payloads := m.Payloads
	var nextIV []byte
	if m.Flags&FlagEncryption != 0 {
		d, err := sa.decryptMsg(m)
		if err != nil {
			sa.ack(0)
			sa.sendCleartextNotify(NotifyPayloadMalformed)
			return fmt.Errorf("%w: AM3 does not decrypt: PSK mismatch likely", ErrAuthFailed)
		}
		payloads, nextIV = d.payloads, d.nextIV
	}
	if err := r.auth.Verify(am.proof(sa), true, am.idI, payloads); err != nil {
		sa.ack(0)
		sa.sendCleartextNotify(NotifyInvalidHashInformation)
		return fmt.Errorf("%w in AM3: PSK mismatch likely", err)
	}
	if nextIV != nil {
		sa.ivs.set(0, nextIV)
	}
	sa.ivs.freeze()
	sa.ack(0)
	am.lastIn, am.lastOut = append([]byte(nil), raw...), nil
	am.state = amDone
	r.log.Info("ike: phase 1 up (responder, Aggressive Mode)", "suite", sa.chosen.String())
	return am.established(sa)
}

// refuseMode answers a first message of the exchange the responder is not
// configured for, as Libreswan does for a connection with aggressive=yes
// when a Main Mode arrives (and for one without it when an Aggressive
// Mode arrives): a cleartext NO-PROPOSAL-CHOSEN. It reports whether the
// message was refused.
func (r *runner) refuseMode(sa *ikeSA, m *Message) bool {
	want := ExchangeIdentityProtection
	if r.mode == ModeAggressive {
		want = ExchangeAggressive
	}
	if m.Exchange == want {
		return false
	}
	r.log.Warn("ike: refusing a phase-1 exchange this responder is not configured for", "exchange", m.Exchange, "accepts", r.mode.String())
	sa.sendCleartextNotify(NotifyNoProposalChosen)
	return true
}
