package ike

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"time"
)

// The Informational exchange (RFC 2408 §4.8, RFC 2409 §5.7) of an ISAKMP
// SA: notifies, Deletes and dead-peer detection (RFC 3706), in both roles.
// Each message is a one-message exchange with a fresh M-ID.

// ---- informational ----

func (sa *ikeSA) handleInformational(m *Message) error {
	if m.Flags&FlagEncryption == 0 {
		for _, p := range All(m.Payloads, PayloadNotify) {
			n, err := ParseNotify(p.Body)
			if err != nil {
				continue
			}
			if err := sa.onCleartextNotify(n); err != nil {
				return err
			}
		}
		return nil
	}
	d, err := sa.decryptMsg(m)
	if err != nil {
		sa.r.log.Debug("ike: undecryptable informational", "err", err)
		return sa.onBadEncrypted(m)
	}
	hash, rest, ok := d.hashRest()
	if !ok || !hmac.Equal(hash, sa.suite.QMHash1(sa.keys.A, m.MessageID, rest)) {
		sa.r.log.Warn("ike: informational with bad HASH(1), dropped")
		return sa.onBadEncrypted(m)
	}
	sa.ivs.set(m.MessageID, d.nextIV)
	for _, p := range d.payloads[1:] {
		switch p.Type {
		case PayloadNotify:
			n, err := ParseNotify(p.Body)
			if err != nil {
				continue
			}
			if err := sa.onNotify(n); err != nil {
				return err
			}
		case PayloadDelete:
			del, err := ParseDelete(p.Body)
			if err != nil {
				continue
			}
			if err := sa.onDelete(del); err != nil {
				return err
			}
		}
	}
	return nil
}

// onBadEncrypted is called for an encrypted message that did not verify.
func (sa *ikeSA) onBadEncrypted(m *Message) error {
	if sa.initiator && sa.mm5Sent() {
		return mm5Refused(sa.r, "peer's reply to MM5 does not decrypt")
	}
	return nil
}

func notifyName(t uint16) string {
	switch t {
	case NotifyNoProposalChosen:
		return "NO-PROPOSAL-CHOSEN"
	case NotifyPayloadMalformed:
		return "PAYLOAD-MALFORMED"
	case NotifyInvalidIDInformation:
		return "INVALID-ID-INFORMATION"
	case NotifyInvalidHashInformation:
		return "INVALID-HASH-INFORMATION"
	case NotifyAuthenticationFailed:
		return "AUTHENTICATION-FAILED"
	case NotifyInvalidSignature:
		return "INVALID-SIGNATURE"
	case NotifyResponderLifetime:
		return "RESPONDER-LIFETIME"
	case NotifyInitialContact:
		return "INITIAL-CONTACT"
	case NotifyRUThere:
		return "R-U-THERE"
	case NotifyRUThereAck:
		return "R-U-THERE-ACK"
	}
	return fmt.Sprintf("notify#%d", t)
}

func isAuthNotify(t uint16) bool {
	switch t {
	case NotifyInvalidHashInformation, NotifyAuthenticationFailed, NotifyPayloadMalformed, NotifyInvalidSignature, NotifyInvalidIDInformation:
		return true
	}
	return false
}

// notifyInvalidCookie is INVALID-COOKIE (RFC 2408 §3.14.1).
const notifyInvalidCookie = 4

// onCleartextNotify handles an unauthenticated notify. It can only end a
// negotiation that has not finished yet.
func (sa *ikeSA) onCleartextNotify(n Notify) error {
	sa.r.log.Info("ike: peer sent cleartext notify", "type", notifyName(n.Type))
	if sa.up || !sa.initiator {
		return nil
	}
	switch {
	case n.Type == NotifyNoProposalChosen || n.Type == 13: // 13 ATTRIBUTES-NOT-SUPPORTED
		return fmt.Errorf("%w: phase 1: offered %s%s", ErrNoProposalChosen, p1List(sa.r.p1Offer), authMethodNote(sa.r))
	case sa.mm5Sent() && isAuthNotify(n.Type):
		return mm5Refused(sa.r, "peer says "+notifyName(n.Type)+" after MM5")
	case n.Type == notifyInvalidCookie:
		return restartable{fmt.Errorf("%w: INVALID-COOKIE in phase 1", ErrLostState)}
	case sa.am != nil && sa.am.state == amI1Sent && isAuthNotify(n.Type):
		return fmt.Errorf("%w: peer says %s to AM1: it does not accept our identity %s (set --local-id to one the server knows)", ErrAuthFailed, notifyName(n.Type), sa.r.ownIdentity())
	}
	return nil
}

func (sa *ikeSA) onNotify(n Notify) error {
	switch n.Type {
	case NotifyRUThere:
		sa.r.log.Debug("ike: DPD R-U-THERE", "seq", fmt.Sprintf("%x", n.Data))
		return sa.sendInformational(func(b *builder) {
			b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyRUThereAck, SPI: sa.cookies(), Data: n.Data}.encode())
		})
	case NotifyRUThereAck:
		sa.r.onDPDAck(sa, n)
		return nil
	case NotifyResponderLifetime:
		sa.onResponderLifetime(n)
		return nil
	case NotifyInitialContact:
		return nil
	case NotifyNoProposalChosen:
		for _, q := range sa.qms {
			if !q.initiator || q.done {
				continue
			}
			if sa.r.pfs == PFSAuto && !sa.r.pfsNow {
				// Perhaps the server requires PFS: offer it once.
				sa.r.pfsNow = true
				q.done = true
				sa.ack(q.mid)
				sa.r.log.Info("ike: the server refused our Quick Mode; retrying with PFS", "group", groupName(sa.chosen.Group))
				return sa.startQM(q.rekeyOf)
			}
			pfs := " without PFS"
			if q.group != 0 {
				pfs = " with PFS " + groupName(q.group)
			}
			return fmt.Errorf("%w: phase 2: offered %s%s", ErrNoProposalChosen, p2List(sa.r.p2Offer), pfs)
		}
	}
	if n.Type < 16384 {
		sa.r.log.Warn("ike: peer reports error", "type", notifyName(n.Type))
		for _, q := range sa.qms {
			if q.initiator && !q.done {
				return fmt.Errorf("%w: peer says %s", ErrPhase2Failed, notifyName(n.Type))
			}
		}
	} else {
		sa.r.log.Info("ike: peer notify", "type", notifyName(n.Type))
	}
	return nil
}

func (sa *ikeSA) onDelete(d Delete) error {
	switch d.Protocol {
	case 1: // ISAKMP
		for _, s := range d.SPIs {
			if bytes.Equal(s, sa.cookies()) {
				sa.r.log.Info("ike: peer deleted the ISAKMP SA")
				return sa.r.onPeerDeletedSA(sa)
			}
		}
	case 3: // ESP: the SPI is the sender's inbound SPI (our outbound); accept either.
		for _, s := range d.SPIs {
			if len(s) == 4 {
				sa.r.peerDeletedChild(binary.BigEndian.Uint32(s))
			}
		}
		if sa.r.initiator && !sa.r.holdsChildren() {
			sa.r.oweRenewal(sa.r.clk.Now().Add(renewGrace))
		}
		sa.r.armTimer()
	}
	return nil
}

// peerDeletedChild forgets the ESP SA spi names (either direction) on
// whichever IKE SA holds it, not only the one the Delete came through: when
// strongSwan re-authenticates it moves every IPsec SA to its new IKE SA at
// once (task_manager_v1.c queue_ike_reauth) and sends their Deletes there,
// while ours stay on the old one until the server deletes it. Looked up on
// the Delete's IKE SA alone, the Delete that `swanctl --terminate --ike`
// sends there before the ISAKMP Deletes (task_manager_v1.c
// queue_ike_delete) went unmatched just after a re-authentication: the
// client kept the SA, saw two ISAKMP Deletes, negotiated a new IKE SA "with
// the tunnel staying up" and a new IPsec SA the server had no L2TP behind
// (strongswan:rekey, 2026-12-02 18:47, TestInterop/ike-sa-deleted).
func (r *runner) peerDeletedChild(spi uint32) {
	for _, sa := range r.sas.sas {
		for i, c := range sa.children {
			if c.sa.Outbound.SPI == spi || c.sa.Inbound.SPI == spi {
				sa.children = append(sa.children[:i], sa.children[i+1:]...)
				r.log.Info("ike: peer deleted ESP SA", "inbound_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI))
				r.emit(ChildSADeleted{InboundSPI: c.sa.Inbound.SPI, ByPeer: true})
				return
			}
		}
	}
}

// checkRenew starts a Quick Mode once renewGrace has passed since the peer
// deleted our last ESP SA, unless a new SA or an exchange for one came
// meanwhile.
func (sa *ikeSA) checkRenew(now time.Time) error {
	if sa.renewAt.IsZero() || now.Before(sa.renewAt) {
		return nil
	}
	sa.renewAt = time.Time{}
	if sa.r.holdsChildren() {
		return nil
	}
	on := sa // through the newest IKE SA, as rekeys (oweRenewal)
	if cur := sa.r.sas.current(); cur != nil {
		on = cur
	}
	for _, s := range []*ikeSA{sa, on} {
		for _, q := range s.qms {
			if !q.done {
				return nil
			}
		}
	}
	sa.r.log.Info("ike: the server deleted our only IPsec SA; negotiating a new one")
	return on.startQM(0)
}

// sendInformational sends an encrypted Informational exchange with a fresh
// M-ID and HASH(1) (RFC 2409 §5.7).
func (sa *ikeSA) sendInformational(fill func(*builder)) error {
	mid, err := sa.r.randomID(1)
	if err != nil {
		return err
	}
	rest := newBuilder()
	fill(rest)
	sa.write(sa.hashedMessage(ExchangeInformational, mid, rest), sa.floated)
	return nil
}

// sendCleartextNotify sends an unencrypted Informational with one notify.
func (sa *ikeSA) sendCleartextNotify(t uint16) {
	mid, err := sa.r.randomID(1)
	if err != nil {
		return
	}
	b := newBuilder()
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: t, SPI: sa.cookies()}.encode())
	sa.write(sa.assemble(ExchangeInformational, mid, b, false), sa.floated)
}

// deleteChildren sends a Delete for every ESP SA and forgets them, with a
// ChildSADeleted event each if report is set.
func (sa *ikeSA) deleteChildren(report bool) {
	for _, c := range sa.children {
		spi := c.sa.Inbound.SPI
		_ = sa.sendInformational(func(b *builder) {
			b.add(PayloadDelete, Delete{DOI: 1, Protocol: 3, SPIs: [][]byte{be32(spi)}}.encode())
		})
		if report {
			sa.r.emit(ChildSADeleted{InboundSPI: spi})
		}
	}
	sa.children = nil
	sa.r.armTimer()
}

// mm5Sent reports whether our MM5 is out and unanswered: then an error
// notify or an undecryptable reply means authentication failed.
func (sa *ikeSA) mm5Sent() bool { return sa.mm != nil && sa.mm.state == mmI5Sent }

// sendDeleteISAKMP sends a Delete for this ISAKMP SA (RFC 2409 §5.7).
func (sa *ikeSA) sendDeleteISAKMP() {
	_ = sa.sendInformational(func(b *builder) {
		b.add(PayloadDelete, Delete{DOI: 1, Protocol: 1, SPIs: [][]byte{sa.cookies()}}.encode())
	})
}

// deleteISAKMP sends a Delete for every established ISAKMP SA alone,
// leaving its ESP SAs up (RFC 2409 §5.7: deleting an ISAKMP SA does not
// delete the SAs it negotiated), as Libreswan does when an IKE SA's
// lifetime ends; Run then returns.
func (r *runner) deleteISAKMP() {
	for _, sa := range r.sas.all() {
		if sa.up {
			sa.sendDeleteISAKMP()
		}
	}
	r.stopped = true
}

// onPeerDeletedSA removes an ISAKMP SA the peer deleted. When it was the
// initiator's only SA and ESP SAs it negotiated are still up (Libreswan at
// the end of the IKE SA's lifetime), a new IKE SA is negotiated in place:
// the L2TP session and everything above it carry on. A server that stops
// deletes its ESP SAs first, so then Run ends with ErrDeleted.
func (r *runner) onPeerDeletedSA(sa *ikeSA) error {
	wasUp := sa.up
	r.sas.remove(sa)
	sa.up = false // no Delete of our own for it later
	r.armTimer()
	if !wasUp {
		if len(r.sas.sas) == 0 {
			return ErrDeleted
		}
		return nil
	}
	if cur := r.sas.current(); cur != nil {
		// Replaced by a newer SA (ours or the peer's make-before-break):
		// its ESP SAs carry on under that one.
		cur.adopt(sa)
		r.log.Info("ike: the old IKE SA is gone; its IPsec SAs carry on under the new one", "esp_sas", len(cur.children))
		return nil
	}
	for i := len(r.sas.sas) - 1; i >= 0; i-- {
		if next := r.sas.sas[i]; !next.up {
			// A new SA is being negotiated (our rekey, or the server's):
			// it takes sa's ESP SAs once it is up.
			if next.replaces == nil {
				next.replaces = sa
			}
			return nil
		}
	}
	if r.initiator && len(sa.children) > 0 {
		r.log.Info("ike: the server deleted the IKE SA but not the IPsec SA: negotiating a new IKE SA, the tunnel stays up")
		_, err := r.startPhase1()
		return err
	}
	return ErrDeleted
}

// onResponderLifetime honours a phase-1 RESPONDER-LIFETIME (RFC 2407
// §4.6.3.1: protocol ISAKMP, the SPI the cookies, the data life
// attributes): a shorter lifetime than ours moves our rekey earlier.
// Phase-2 ones arrive inside QM2 and are read there.
func (sa *ikeSA) onResponderLifetime(n Notify) {
	if n.Protocol != 1 {
		return
	}
	attrs, err := ParseAttributes(n.Data)
	if err != nil {
		return
	}
	if l := lifetimeOf(attrs, attrLifeType, attrLifeDur); l > 0 && (sa.lifetime <= 0 || l < sa.lifetime) {
		sa.r.log.Info("ike: the server shortens the IKE SA's lifetime", "lifetime", l)
		sa.lifetime = l
		sa.r.armTimer()
	}
}
