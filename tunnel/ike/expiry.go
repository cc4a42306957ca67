package ike

import (
	"fmt"
	"time"
)

// expireAt is when the client forgets child c without a Delete from the
// peer: a tenth of its lifetime after the end (zero: no lifetime). By then
// the peer has removed it too (RFC 2407 §4.5.4: an SA ends with its
// lifetime), and a peer that deleted it sent its Delete at the end.
func expireAt(c *child) time.Time {
	if c.expires.IsZero() {
		return time.Time{}
	}
	return c.expires.Add(c.sa.Lifetime / 10)
}

// expireChildren forgets the ESP SAs past expireAt. strongSwan's
// re-authentication (make-before-break) drops the old IKE SA's ESP SAs with
// it, without Deletes, while we move them to the new IKE SA: kept for ever,
// they made us believe we still had one after the server had deleted all it
// knew, so no renewal came (strongswan:rekey, 2026-12-02 14:26). When the
// last one of all goes, the initiator renews at once.
func (sa *ikeSA) expireChildren(now time.Time) {
	kept := sa.children[:0]
	for _, c := range sa.children {
		if at := expireAt(c); !at.IsZero() && !now.Before(at) {
			sa.r.log.Info("ike: IPsec SA past its lifetime without a Delete from the server; forgetting it",
				"inbound_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI), "lifetime", c.sa.Lifetime)
			sa.r.emit(ChildSADeleted{InboundSPI: c.sa.Inbound.SPI})
			continue
		}
		kept = append(kept, c)
	}
	expired := len(kept) < len(sa.children)
	clear(sa.children[len(kept):])
	sa.children = kept
	if expired && sa.r.initiator && !sa.r.holdsChildren() {
		sa.r.oweRenewal(now)
	}
}

// holdsChildren reports whether some IKE SA, not only the newest, still
// holds an ESP SA: after the server's re-authentication our SAs may sit on
// the old IKE SA and the server's new ones on the new SA.
func (r *runner) holdsChildren() bool {
	for _, sa := range r.sas.sas {
		if len(sa.children) > 0 {
			return true
		}
	}
	return false
}

// oweRenewal makes the newest IKE SA negotiate a new ESP SA at at (unless a
// renewal is owed already): the last ESP SA has gone. On the newest one, as
// for rekeys: charon answers no Quick Mode on an IKE SA it is replacing.
// Before, the IKE SA that had lost its last ESP SA renewed, even when the
// newer one held the server's SA: a needless Quick Mode, and one strongSwan
// would leave unanswered on an old IKE SA (the tunnel down after 31 s).
func (r *runner) oweRenewal(at time.Time) {
	if cur := r.sas.current(); cur != nil && cur.renewAt.IsZero() {
		cur.renewAt = at
		r.armTimer()
	}
}

// peerReplaced is the client's part of a Quick Mode the server started: its
// new SA replaces every ESP SA we hold (they all carry the one L2TP flow),
// wherever they sit, so none of them is rekeyed by us, and none lives longer
// than life, the new SA's lifetime, from its own start. A server tells its
// own lifetime when it proposes (RFC 2407 §4.5); as a responder it may keep
// to it and still answer with ours, without the RESPONDER-LIFETIME of RFC
// 2407 §4.6.3.1: strongSwan does, installing every IPsec SA with its
// configured life_time whatever was proposed (child_sa.c install,
// quick_mode.c apply_lifetimes). So an SA we started with our 1 h, which
// charon had installed with 30 s and later dropped silently with an old IKE
// SA, was counted for an hour: after the server deleted all it knew, we still
// had "one" and renewed none (strongswan:rekey, 2026-12-02 14:38,
// TestInterop/ipsec-sa-deleted). Capped, it is forgotten a tenth of the
// server's lifetime after the server's end (expireChildren).
func (r *runner) peerReplaced(life time.Duration) {
	if life <= 0 {
		return
	}
	for _, sa := range r.sas.all() {
		for _, c := range sa.children {
			c.rekeying = true
			if c.sa.Lifetime > 0 && c.sa.Lifetime <= life {
				continue
			}
			r.log.Info("ike: the server replaced an IPsec SA of ours; it ends with the server's lifetime",
				"inbound_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI), "lifetime", c.sa.Lifetime, "server_lifetime", life)
			c.sa.Lifetime = life
			c.expires = c.upAt.Add(life)
		}
	}
	r.armTimer()
}
