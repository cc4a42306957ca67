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
// last one goes, the initiator renews at once.
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
	if expired && len(kept) == 0 && sa.r.initiator && sa.up && sa.renewAt.IsZero() {
		sa.renewAt = now
	}
}
