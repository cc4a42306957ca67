package ike

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// quickMode is one Quick Mode exchange (RFC 2409 §5.5) on an ISAKMP SA, in
// either role: the initiator builds QM1 and QM3 and processes QM2; the
// responder processes QM1 and QM3 and builds QM2. Each has its own M-ID and
// so its own IV chain.
type quickMode struct {
	mid       uint32
	initiator bool // we sent QM1
	ni, nr    []byte
	inSPI     uint32
	outSPI    uint32
	alg       esp.Algorithm
	encap     uint16
	lifetime  time.Duration
	lifeKB    uint64 // 0: no kilobyte lifetime
	lastIn    []byte // last message received (duplicate detection)
	lastOut   []byte // our last message (resent on duplicates)
	done      bool
	rekeyOf   uint32 // inbound SPI of the child this one replaces
	// PFS (RFC 2409 §5.5): the group both sides use, our key, and
	// g(qm)^xy, which goes into KEYMAT. Zero/nil without PFS.
	group uint16
	dh    dhKey
	gxy   []byte
}

// qmKey makes our Diffie-Hellman key for one Quick Mode with PFS.
func qmKey(r *runner, group uint16) (dhKey, error) {
	k, err := newDHKey(group, r.rand)
	if err != nil {
		return nil, fmt.Errorf("%w: PFS group %d: %v", ErrPhase2Failed, group, err)
	}
	return k, nil
}

func (sa *ikeSA) findQM(mid uint32) *quickMode {
	for _, q := range sa.qms {
		if q.mid == mid {
			return q
		}
	}
	return nil
}

func (sa *ikeSA) addQM(q *quickMode) {
	if len(sa.qms) >= maxQMExchanges {
		for i, old := range sa.qms {
			if old.done {
				sa.qms = append(sa.qms[:i], sa.qms[i+1:]...)
				break
			}
		}
	}
	if len(sa.qms) >= maxQMExchanges {
		sa.qms = sa.qms[1:]
	}
	sa.qms = append(sa.qms, q)
}

// startQM sends QM1 for a transport-mode UDP-encapsulated ESP SA carrying
// L2TP: HASH(1), SA, Ni, IDci, IDcr, NAT-OAi, NAT-OAr (RFC 2409 §5.5,
// RFC 3947 §5).
func (sa *ikeSA) startQM(rekeyOf uint32) error {
	mid, err := sa.r.randomID(1)
	if err != nil {
		return err
	}
	spi, err := sa.r.randomID(256)
	if err != nil {
		return err
	}
	ni, err := sa.r.random(nonceLen)
	if err != nil {
		return err
	}
	q := &quickMode{mid: mid, initiator: true, ni: ni, inSPI: spi, rekeyOf: rekeyOf}
	if sa.r.pfsNow {
		if q.dh, err = qmKey(sa.r, sa.chosen.Group); err != nil {
			return err
		}
		q.group = sa.chosen.Group
	}
	// HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] (RFC 2409 §5.5), NAT-OAs.
	rest := newBuilder()
	rest.add(PayloadSA, encodeP2SA(spi, sa.r.p2Offer, sa.r.p2Life, sa.r.p2LifeKB, sa.nat.encap(), q.group))
	rest.add(PayloadNonce, ni)
	if q.dh != nil {
		rest.add(PayloadKE, q.dh.Public())
	}
	if sa.r.initiator {
		rest.add(PayloadID, idFor(sa.r.local, 17, sa.r.l2tpPort).encode())
		rest.add(PayloadID, idFor(sa.r.remote, 17, 1701).encode())
		rest.add(sa.nat.natoaType(), natoa(sa.r.local))
		rest.add(sa.nat.natoaType(), natoa(sa.r.remote))
	} else if len(sa.peerQMIDs) == 2 {
		// A server-side rekey: the selectors the client proposed, swapped.
		rest.add(PayloadID, sa.peerQMIDs[1])
		rest.add(PayloadID, sa.peerQMIDs[0])
	}
	msg := sa.hashedMessage(ExchangeQuickMode, mid, rest)
	q.lastOut = msg
	sa.addQM(q)
	sa.r.log.Debug("ike: sending QM1", "mid", mid, "pfs_group", q.group)
	sa.sendReliable(mid, msg, sa.floated, func() error {
		return fmt.Errorf("%w: %w: no answer to QM1", ErrPhase2Failed, ErrTimeout)
	})
	return nil
}

func (sa *ikeSA) handleQM(m *Message, raw []byte) error {
	if m.Flags&FlagEncryption == 0 {
		sa.r.log.Debug("ike: cleartext quick mode dropped")
		return nil
	}
	q := sa.findQM(m.MessageID)
	if q != nil && bytes.Equal(q.lastIn, raw) {
		if q.lastOut != nil && (q.done || !q.initiator) {
			sa.r.log.Debug("ike: duplicate quick mode message, resending our reply", "mid", m.MessageID)
			sa.write(q.lastOut, sa.floated)
		}
		return nil
	}
	d, err := sa.decryptMsg(m)
	if err != nil {
		sa.r.log.Debug("ike: undecryptable quick mode message", "err", err)
		return nil
	}
	hash, rest, ok := d.hashRest()
	if !ok {
		sa.r.log.Debug("ike: quick mode message without HASH")
		return nil
	}
	switch {
	case q == nil:
		return sa.qmResponderQM1(m, raw, d, hash, rest)
	case q.initiator && !q.done:
		return sa.qmInitiatorQM2(q, raw, d, hash, rest)
	case !q.initiator && !q.done:
		return sa.qmResponderQM3(q, raw, d, hash)
	}
	return nil
}

// qmInitiatorQM2 verifies HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest),
// accepts the chosen transform, sends QM3 and installs the child SA.
func (sa *ikeSA) qmInitiatorQM2(q *quickMode, raw []byte, d *decrypted, hash, rest []byte) error {
	if !hmac.Equal(hash, sa.suite.QMHash2(sa.keys.A, q.mid, q.ni, rest)) {
		sa.r.log.Warn("ike: QM2 HASH(2) mismatch, dropped")
		return nil
	}
	sa.ivs.set(q.mid, d.nextIV)
	q.lastIn = append([]byte(nil), raw...)
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrPhase2Failed}, a...)...)
	}
	saP := First(d.payloads, PayloadSA)
	nrP := First(d.payloads, PayloadNonce)
	if saP == nil || nrP == nil {
		return fail("QM2 without SA or nonce")
	}
	keP := First(d.payloads, PayloadKE)
	switch {
	case keP != nil && q.dh == nil:
		return fail("QM2 carries KE (PFS) that was not offered")
	case keP == nil && q.dh != nil:
		return fail("QM2 lacks the KE that our PFS offer requires")
	}
	offer, err := ParseSA(saP.Body)
	if err != nil {
		return fail("QM2 SA: %v", err)
	}
	if len(offer.Proposals) != 1 || len(offer.Proposals[0].Transforms) != 1 || offer.Proposals[0].Protocol != 3 || len(offer.Proposals[0].SPI) != 4 {
		return fail("QM2 must choose one ESP transform")
	}
	prop := offer.Proposals[0]
	t, ok := p2FromTransform(&prop.Transforms[0])
	if !ok || !containsP2(sa.r.p2Offer, t.alg) {
		return fail("QM2 chose %s which was not offered", t.alg)
	}
	if t.encap != EncapUDPTransport && t.encap != EncapUDPTransportDraft {
		return fail("QM2 chose encapsulation mode %d, want UDP transport", t.encap)
	}
	if t.group != q.group {
		return fail("QM2 chose PFS group %d, we offered %d", t.group, q.group)
	}
	if q.dh != nil {
		if q.gxy, err = q.dh.SharedSecret(keP.Body); err != nil {
			return fail("QM2 KE: %v", err)
		}
	}
	q.alg, q.encap = t.alg, t.encap
	q.outSPI = binary.BigEndian.Uint32(prop.SPI)
	if q.outSPI < 256 {
		return fail("peer SPI %d is reserved", q.outSPI)
	}
	q.nr = append([]byte(nil), nrP.Body...)
	q.lifetime = sa.r.p2Life
	if l := lifetimeOf(prop.Transforms[0].Attrs, p2LifeType, p2LifeDur); l > 0 && l < q.lifetime {
		q.lifetime = l
	}
	q.lifeKB = minLife(sa.r.p2LifeKB, lifeKilobytesOf(prop.Transforms[0].Attrs, p2LifeType, p2LifeDur))
	for _, p := range All(d.payloads, PayloadNotify) {
		n, err := ParseNotify(p.Body)
		if err != nil || n.Type != NotifyResponderLifetime {
			continue
		}
		attrs, err := ParseAttributes(n.Data)
		if err != nil {
			continue
		}
		if l := lifetimeOf(attrs, p2LifeType, p2LifeDur); l > 0 && l < q.lifetime {
			q.lifetime = l
		}
		q.lifeKB = minLife(q.lifeKB, lifeKilobytesOf(attrs, p2LifeType, p2LifeDur))
	}
	// QM3: HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
	h3 := sa.suite.QMHash3(sa.keys.A, q.mid, q.ni, q.nr)
	q.lastOut = sa.assemble(ExchangeQuickMode, q.mid, withHash(h3, nil), true)
	sa.ack(q.mid)
	// The peer may send on the pair as soon as QM3 arrives (a responder
	// installs it then, RFC 2409 §5.5): our inbound SA must be ready first.
	if err := sa.prepareInbound(q); err != nil {
		return err
	}
	sa.write(q.lastOut, sa.floated)
	q.done = true
	return sa.installChild(q)
}

// qmResponderQM1 answers a Quick Mode started by the peer (our Responder, or
// a server-initiated rekey towards our Initiator).
func (sa *ikeSA) qmResponderQM1(m *Message, raw []byte, d *decrypted, hash, rest []byte) error {
	if !hmac.Equal(hash, sa.suite.QMHash1(sa.keys.A, m.MessageID, rest)) {
		sa.r.log.Warn("ike: QM1 HASH(1) mismatch, dropped")
		return nil
	}
	sa.ivs.set(m.MessageID, d.nextIV)
	saP := First(d.payloads, PayloadSA)
	niP := First(d.payloads, PayloadNonce)
	ids := All(d.payloads, PayloadID)
	reject := func(why string) error {
		sa.r.log.Warn("ike: rejecting peer's quick mode", "why", why)
		return sa.sendInformational(func(b *builder) {
			b.add(PayloadNotify, Notify{DOI: 1, Protocol: 3, Type: NotifyNoProposalChosen}.encode())
		})
	}
	if saP == nil || niP == nil || (len(ids) != 0 && len(ids) != 2) {
		return reject("QM1 without SA/nonce or with one ID")
	}
	keP := First(d.payloads, PayloadKE)
	if keP == nil && sa.r.reqPFS {
		return reject("PFS required, but QM1 has no KE")
	}
	offer, err := ParseSA(saP.Body)
	if err != nil {
		return reject("bad SA")
	}
	// With a KE every transform names its group (RFC 2409 §5.5); we take
	// one whose group we have and whose KE length fits it.
	acceptable := func(t p2Transform) bool {
		if !containsP2(sa.r.p2Offer, t.alg) || (t.encap != EncapUDPTransport && t.encap != EncapUDPTransportDraft) {
			return false
		}
		if keP == nil {
			return t.group == 0
		}
		n, err := dhPublicLen(t.group)
		return err == nil && len(keP.Body) == n
	}
	var (
		chosen *Transform
		prop   Proposal
		t      p2Transform
		found  bool
	)
	for _, p := range offer.Proposals {
		if p.Protocol != 3 || len(p.SPI) != 4 {
			continue
		}
		for i := range p.Transforms {
			if pt, ok := p2FromTransform(&p.Transforms[i]); ok && acceptable(pt) {
				chosen, prop, t, found = &p.Transforms[i], p, pt, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		return reject("no acceptable ESP transform (offered " + describeP2(offer) + ")")
	}
	alg, encap := t.alg, t.encap
	spi, err := sa.r.randomID(256)
	if err != nil {
		return err
	}
	nr, err := sa.r.random(nonceLen)
	if err != nil {
		return err
	}
	q := &quickMode{mid: m.MessageID, ni: append([]byte(nil), niP.Body...), nr: nr, inSPI: spi,
		outSPI: binary.BigEndian.Uint32(prop.SPI), alg: alg, encap: encap, lastIn: append([]byte(nil), raw...), group: t.group}
	if keP != nil {
		if q.dh, err = qmKey(sa.r, t.group); err != nil {
			return err
		}
		if q.gxy, err = q.dh.SharedSecret(keP.Body); err != nil {
			return reject("bad KE")
		}
	}
	q.lifetime = sa.r.p2Life
	if l := lifetimeOf(chosen.Attrs, p2LifeType, p2LifeDur); l > 0 && (q.lifetime == 0 || l < q.lifetime) {
		q.lifetime = l
	}
	q.lifeKB = minLife(sa.r.p2LifeKB, lifeKilobytesOf(chosen.Attrs, p2LifeType, p2LifeDur))
	if q.outSPI < 256 {
		return reject("reserved SPI")
	}
	// QM2: HASH(2), SA (the chosen transform, our SPI), Nr, [KE,] IDci, IDcr echoed.
	out := newBuilder()
	out.add(PayloadSA, encodeSA(3, be32(spi), []uint8{chosen.ID}, [][]attrPair{p2Attrs(alg, q.lifetime, q.lifeKB, encap, q.group)}))
	out.add(PayloadNonce, nr)
	if q.dh != nil {
		out.add(PayloadKE, q.dh.Public())
	}
	if len(ids) == 2 {
		out.add(PayloadID, ids[0].Body)
		out.add(PayloadID, ids[1].Body)
		sa.peerQMIDs = [][]byte{append([]byte(nil), ids[0].Body...), append([]byte(nil), ids[1].Body...)}
	}
	h2 := sa.suite.QMHash2(sa.keys.A, q.mid, q.ni, out.buf)
	q.lastOut = sa.assemble(ExchangeQuickMode, q.mid, withHash(h2, out), true)
	// The peer has the keys once QM2 arrives and may send on the pair
	// right after its QM3: that ESP may overtake QM3 on the way, or reach
	// the data path while QM3 still waits in our queue. Our inbound SA
	// must be ready first.
	if err := sa.prepareInbound(q); err != nil {
		return err
	}
	sa.addQM(q)
	sa.sendReliable(q.mid, q.lastOut, sa.floated, func() error {
		sa.r.log.Warn("ike: no QM3 from peer, abandoning quick mode", "mid", q.mid)
		return nil
	})
	return nil
}

func describeP2(sa *SA) string {
	var as []esp.Algorithm
	for _, p := range sa.Proposals {
		for i := range p.Transforms {
			t, _ := p2FromTransform(&p.Transforms[i])
			as = append(as, t.alg)
		}
	}
	return p2List(as)
}

func (sa *ikeSA) qmResponderQM3(q *quickMode, raw []byte, d *decrypted, hash []byte) error {
	if !hmac.Equal(hash, sa.suite.QMHash3(sa.keys.A, q.mid, q.ni, q.nr)) {
		sa.r.log.Warn("ike: QM3 HASH(3) mismatch, dropped")
		return nil
	}
	sa.ivs.set(q.mid, d.nextIV)
	q.lastIn = append([]byte(nil), raw...)
	q.lastOut = nil
	q.done = true
	sa.ack(q.mid)
	return sa.installChild(q)
}

// childKeys derives KEYMAT for both directions (RFC 2409 §5.5): each SA
// is keyed with its receiver's SPI; Ni_b/Nr_b are this Quick Mode's nonces.
func (sa *ikeSA) childKeys(q *quickMode) (in, out esp.Keys, err error) {
	encLen, authLen, err := q.alg.KeymatLen()
	if err != nil {
		return in, out, fmt.Errorf("%w: %v", ErrPhase2Failed, err)
	}
	keys := func(spi uint32) esp.Keys {
		km := sa.suite.Keymat(sa.keys.D, q.gxy, 3, spi, q.ni, q.nr, encLen+authLen)
		return esp.Keys{SPI: spi, Alg: q.alg, EncKey: km[:encLen], AuthKey: km[encLen:]}
	}
	return keys(q.inSPI), keys(q.outSPI), nil
}

// prepareInbound gives the inbound keys of q to Config.PrepareInbound, if
// set, before the message after which the peer may send on them leaves.
// If the data path cannot take them, ChildSAUp's install will fail alike
// and report it: the Quick Mode goes on.
func (sa *ikeSA) prepareInbound(q *quickMode) error {
	if sa.r.prepareInbound == nil {
		return nil
	}
	in, _, err := sa.childKeys(q)
	if err != nil {
		return err
	}
	if err := sa.r.prepareInbound(in); err != nil {
		sa.r.log.Warn("ike: cannot prepare the inbound ESP SA", "in_spi", fmt.Sprintf("%08x", q.inSPI), "err", err)
	}
	return nil
}

// installChild adds the child SA of a finished Quick Mode and reports it
// (ChildSAUp).
func (sa *ikeSA) installChild(q *quickMode) error {
	inKeys, outKeys, err := sa.childKeys(q)
	if err != nil {
		return err
	}
	if !q.initiator {
		// The peer started this Quick Mode: it replaces the existing SAs
		// (server-side rekey), so we do not rekey those ourselves.
		for _, old := range sa.children {
			old.rekeying = true
		}
		if sa.r.initiator {
			sa.r.peerReplaced(q.lifetime)
		}
	}
	c := &child{sa: ChildSA{Inbound: inKeys, Outbound: outKeys, Lifetime: q.lifetime, LifeKilobytes: q.lifeKB, EncapMode: q.encap, Initiated: q.initiator},
		upAt: sa.r.clk.Now()}
	if q.group != 0 {
		c.sa.PFS = groupName(q.group)
	}
	if q.lifetime > 0 {
		c.expires = sa.r.clk.Now().Add(q.lifetime)
	}
	sa.children = append(sa.children, c)
	sa.r.log.Debug("ike: ESP SA up", "alg", q.alg.String(), "in_spi", fmt.Sprintf("%08x", q.inSPI),
		"out_spi", fmt.Sprintf("%08x", q.outSPI), "lifetime", q.lifetime, "life_kb", q.lifeKB, "encap", q.encap)
	sa.r.emit(ChildSAUp{Child: c.sa})
	if q.rekeyOf != 0 {
		for _, owner := range sa.r.sas.all() { // the replaced SA may sit on an older IKE SA
			owner.retireChild(q.rekeyOf)
		}
	}
	sa.r.armTimer()
	return nil
}

// retireDelay is how long a child SA replaced by a rekey lives on before
// its Delete. The data path switches to the new outbound SA as soon as it is
// installed, but packets sealed with the old one may still wait in its send
// batch, and a Delete written by this goroutine can overtake them: the
// server, which removes both directions of the pair on our Delete (RFC 2408
// §3.15), then drops them for an unknown SPI (TestClientHonoursKilobyteLifetime,
// once in 75 runs under the race detector). Meanwhile the old inbound SA
// also takes what the server still sends on it. strongSwan waits 5 s
// (charon.delete_rekeyed_delay); a second is ample for a send batch.
const retireDelay = time.Second

// retireChild schedules the Delete of a replaced child SA (retireDelay).
func (sa *ikeSA) retireChild(inSPI uint32) {
	for _, c := range sa.children {
		if c.sa.Inbound.SPI == inSPI && c.retireAt.IsZero() {
			c.rekeying = true
			c.retireAt = sa.r.clk.Now().Add(retireDelay)
			sa.r.armTimer()
			return
		}
	}
}

// retireChildren deletes the replaced child SAs whose retireDelay is over:
// Delete to the peer, event locally.
func (sa *ikeSA) retireChildren(now time.Time) {
	kept := sa.children[:0]
	for _, c := range sa.children {
		if c.retireAt.IsZero() || now.Before(c.retireAt) {
			kept = append(kept, c)
			continue
		}
		spi := c.sa.Inbound.SPI
		_ = sa.sendInformational(func(b *builder) {
			b.add(PayloadDelete, Delete{DOI: 1, Protocol: 3, SPIs: [][]byte{be32(spi)}}.encode())
		})
		sa.r.emit(ChildSADeleted{InboundSPI: spi})
	}
	clear(sa.children[len(kept):])
	sa.children = kept
}

// rekeyAt is when the initiator starts a new Quick Mode for c: at 90% of
// its lifetime (zero time: never).
func (sa *ikeSA) rekeyAt(c *child) time.Time {
	if !sa.r.initiator || c.rekeying || c.expires.IsZero() {
		return time.Time{}
	}
	return c.expires.Add(-c.sa.Lifetime / 10)
}

func (sa *ikeSA) checkRekey(now time.Time) error {
	for _, c := range sa.children {
		if at := sa.rekeyAt(c); !at.IsZero() && !at.After(now) {
			c.rekeying = true
			sa.r.log.Info("ike: rekeying ESP SA", "in_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI))
			// On the newest IKE SA: an older one may be on its way out, and strongSwan answers
			// no Quick Mode on the SA it is re-authenticating (strongswan:rekey, 2026-12-02 14:33:
			// no answer to QM1, the tunnel went down).
			on := sa
			if cur := sa.r.sas.current(); cur != nil {
				on = cur
			}
			if err := on.startQM(c.sa.Inbound.SPI); err != nil {
				return err
			}
		}
	}
	return nil
}

// rekeyChildNow starts a new Quick Mode for the child whose outbound SPI
// is outSPI, unless one is running already: the data path asks for it when
// the SA's sequence numbers run low (RFC 4303 §3.3.3: a sender must not
// cycle them; a new SA must be in place before 2^32-1). A child no longer
// known (replaced meanwhile) is ignored.
func (r *runner) rekeyChildNow(outSPI uint32) error {
	for _, sa := range r.sas.sas {
		for _, c := range sa.children {
			if c.sa.Outbound.SPI != outSPI || c.rekeying || !sa.up {
				continue
			}
			c.rekeying = true
			r.log.Info("ike: rekeying ESP SA: the data path asks (sequence numbers or byte lifetime run low)", "in_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI))
			if cur := r.sas.current(); cur != nil {
				return cur.startQM(c.sa.Inbound.SPI)
			}
			return sa.startQM(c.sa.Inbound.SPI)
		}
	}
	return nil
}
