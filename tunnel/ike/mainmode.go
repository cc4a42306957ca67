package ike

import (
	"bytes"
	"fmt"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
)

// Vendor IDs (testdata/vectors/ike_vendor_ids.json): MD5 of the strings
// "RFC 3947" (RFC 3947 §3.1), "draft-ietf-ipsec-nat-t-ike-02\n",
// "...-02", "...-03", and the RFC 3706 DPD VID.
var (
	vidRFC3947  = []byte{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f}
	vidDraft02N = []byte{0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e, 0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f}
	vidDraft02  = []byte{0xcd, 0x60, 0x46, 0x43, 0x35, 0xdf, 0x21, 0xf8, 0x7c, 0xfd, 0xb2, 0xfc, 0x68, 0xb6, 0xa4, 0x48}
	vidDraft03  = []byte{0x7d, 0x94, 0x19, 0xa6, 0x53, 0x10, 0xca, 0x6f, 0x2c, 0x17, 0x9d, 0x92, 0x15, 0x52, 0x9d, 0x56}
	vidDPD      = []byte{0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00}
)

type mmState int

const (
	mmIdle   mmState = iota // responder: waiting for MM1
	mmI1Sent                // initiator
	mmI3Sent                //
	mmI5Sent                //
	mmR2Sent                // responder
	mmR4Sent                //
	mmDone                  // either role
)

// mainMode is the Main Mode (Identity Protection) exchange of one ISAKMP
// SA, RFC 2409 §5 with NAT-T (RFC 3947), in both roles. The initiator side
// builds MM1, MM3, MM5 and processes MM2, MM4, MM6; the responder side the
// reverse. Authentication (HASH_I/HASH_R) is the runner's Authenticator.
type mainMode struct {
	state    mmState
	dh       dhKey
	saiB     []byte // the initiator's SA body as sent (RFC 2409 §5)
	gxi, gxr []byte
	ni, nr   []byte
	lastIn   []byte // last message received (duplicate detection)
	lastOut  []byte // responder: our last reply, resent on duplicates
}

// startMainMode makes a new initiator SA in the table and sends MM1:
// HDR, SA, VID(RFC 3947), VID(draft-02\n), VID(draft-03), VID(draft-02),
// VID(DPD) (RFC 2409 §5.4, RFC 3947 §3.1, RFC 3706 §5.1).
func (r *runner) startMainMode() (*ikeSA, error) {
	sa := &ikeSA{r: r, initiator: true, mm: &mainMode{state: mmI1Sent}, lifetime: r.p1Life}
	c, err := r.random(8)
	if err != nil {
		return nil, err
	}
	copy(sa.ckyI[:], c)
	if !r.sas.add(sa) {
		return nil, fmt.Errorf("%w: too many IKE SAs", ErrConfig)
	}
	b := newBuilder()
	b.add(PayloadSA, encodeP1SAAuth(r.p1Offer, r.p1Life, authMethod(r)))
	sa.mm.saiB = append([]byte(nil), b.buf[genericHeaderLength:]...)
	for _, v := range [][]byte{vidRFC3947, vidDraft02N, vidDraft03, vidDraft02, vidDPD} {
		b.add(PayloadVendorID, v)
	}
	addFragmentationVID(r, b)
	msg := sa.assemble(ExchangeIdentityProtection, 0, b, false)
	r.log.Debug("ike: sending MM1", "transforms", len(r.p1Offer))
	sa.sendReliable(0, msg, false, func() error {
		return fmt.Errorf("%w: no answer to MM1 from %s (server unreachable, or it silently rejected all of: %s)", ErrTimeout, r.remote, p1List(r.p1Offer))
	})
	return sa, nil
}

// process consumes one Main Mode message for sa.
func (mm *mainMode) process(sa *ikeSA, m *Message, raw []byte) error {
	if mm.lastIn != nil && bytes.Equal(raw, mm.lastIn) {
		// A retransmitted message. The initiator's own timer resends its
		// request; the responder resends its reply.
		if !sa.initiator && mm.lastOut != nil {
			sa.write(mm.lastOut, sa.floated)
		}
		return nil
	}
	enc := m.Flags&FlagEncryption != 0
	switch mm.state {
	case mmI1Sent:
		if enc || m.RCookie == ([8]byte{}) {
			return nil
		}
		return mm.onMM2(sa, m, raw)
	case mmI3Sent:
		if enc || m.RCookie != sa.ckyR {
			return nil
		}
		return mm.onMM4(sa, m, raw)
	case mmI5Sent:
		if !enc {
			return nil // late MM4 retransmission
		}
		return mm.onMM6(sa, m, raw)
	case mmIdle:
		if enc || m.RCookie != ([8]byte{}) {
			return nil
		}
		return mm.onMM1(sa, m, raw)
	case mmR2Sent:
		if enc || m.ICookie != sa.ckyI {
			return nil
		}
		return mm.onMM3(sa, m, raw)
	case mmR4Sent:
		if !enc || m.ICookie != sa.ckyI {
			return nil
		}
		return mm.onMM5(sa, m, raw)
	}
	return nil
}

// choose fixes the suite and makes our Diffie-Hellman key.
func (mm *mainMode) choose(sa *ikeSA, t Phase1Transform) error {
	s, err := ikev1.NewSuite(ikev1.HashAlg(t.Hash))
	if err != nil {
		return err
	}
	if _, _, err := p1KeyLen(t.Enc, t.KeyBits); err != nil {
		return err
	}
	dh, err := newDHKey(t.Group, sa.r.rand)
	if err != nil {
		return err
	}
	sa.chosen, sa.suite, mm.dh = t.normalized(), s, dh
	return nil
}

// deriveKeys computes g^xy, SKEYID (through the Authenticator), SKEYID_d/a/e
// and the phase-1 cipher with its first IV (RFC 2409 §5, Appendix B).
func (mm *mainMode) deriveKeys(sa *ikeSA, peerKE []byte) error {
	gxy, err := mm.dh.SharedSecret(peerKE)
	if err != nil {
		return err
	}
	skeyid := sa.r.auth.SKEYID(sa.suite, mm.ni, mm.nr, gxy)
	sa.keys = sa.suite.DeriveKeys(skeyid, gxy, sa.ckyI[:], sa.ckyR[:])
	keyLen, bs, err := p1KeyLen(sa.chosen.Enc, sa.chosen.KeyBits)
	if err != nil {
		return err
	}
	blk, err := newP1Block(sa.chosen.Enc, sa.suite.EncryptionKey(sa.keys.E, keyLen))
	if err != nil {
		return err
	}
	sa.ivs = newIVManager(sa.suite, blk, sa.suite.Phase1IV(mm.gxi, mm.gxr, bs))
	return nil
}

func (mm *mainMode) proof(sa *ikeSA) phase1Proof {
	return phase1Proof{suite: sa.suite, skeyid: sa.keys.SKEYID, gxi: mm.gxi, gxr: mm.gxr,
		ckyI: sa.ckyI[:], ckyR: sa.ckyR[:], saiB: mm.saiB}
}

// established ends Main Mode: the SA is up, and the initiator starts its
// first Quick Mode.
func (mm *mainMode) established(sa *ikeSA) error {
	mm.state = mmDone
	sa.up = true
	sa.upAt = sa.r.clk.Now()
	sa.r.p1Restarts = 0 // a later exchange (after the server deleted this SA) gets its own
	sa.r.emit(Phase1Up{Suite: sa.chosen.String()})
	if old := sa.replaces; old != nil {
		// Make-before-break: the new SA is up, so the ESP SAs move to it
		// (their rekeys and Deletes go through it) and the old one goes.
		sa.replaces = nil
		sa.adopt(old)
		if old.up {
			old.sendDeleteISAKMP()
		}
		sa.r.sas.remove(old)
		sa.r.log.Info("ike: the new IKE SA is up and has taken over the IPsec SAs of the old one", "esp_sas", len(sa.children))
	}
	if sa.initiator && len(sa.children) == 0 {
		return sa.startQM(0)
	}
	return nil
}

// adopt takes over the ESP SAs of old, an ISAKMP SA that is going away:
// RFC 2409 §5.7, deleting an ISAKMP SA leaves the SAs it negotiated up.
// A renewal old still owed (the peer deleted our last ESP SA under it) is
// owed by sa now: strongSwan re-authenticates (a new Main Mode, the old
// ISAKMP SA deleted at once) also just after deleting our ESP SAs, and its
// new SA then brings no ESP SA of its own, there being none to move; with
// the renewal lost we had none at all (strongswan:rekey, 2026-12-02).
func (sa *ikeSA) adopt(old *ikeSA) {
	sa.children = append(sa.children, old.children...)
	old.children = nil
	owe := func(at time.Time) {
		if !at.IsZero() && (sa.renewAt.IsZero() || at.Before(sa.renewAt)) {
			sa.renewAt = at
		}
	}
	owe(old.renewAt)
	old.renewAt = time.Time{}
	// A Quick Mode of ours still under way on old dies with it (its
	// retransmissions and replies are old's): a renewal is owed at once, a
	// rekey is due again.
	for _, q := range old.qms {
		if !q.initiator || q.done || !sa.r.initiator {
			continue
		}
		if q.rekeyOf == 0 {
			owe(sa.r.clk.Now())
			continue
		}
		for _, c := range sa.children {
			if c.sa.Inbound.SPI == q.rekeyOf {
				c.rekeying = false
			}
		}
	}
	sa.r.armTimer()
}

// rekeyP1At is when the client replaces this ISAKMP SA: at 90% of its
// lifetime, if it is the current one (zero: never). One the server started
// (its re-authentication) is left to the server until 10% after its
// lifetime: strongSwan re-authenticates it itself, and when our rekey
// deleted it first, charon deleted its IPsec SAs with it (without Deletes),
// so ESP went into a void (strongswan:rekey, 2026-12-02).
func (sa *ikeSA) rekeyP1At() time.Time {
	if !sa.r.initiator || !sa.up || sa.lifetime <= 0 || sa.replacing || sa != sa.r.sas.current() {
		return time.Time{}
	}
	if !sa.initiator {
		return sa.upAt.Add(sa.lifetime + sa.lifetime/10)
	}
	return sa.upAt.Add(sa.lifetime - sa.lifetime/10)
}

// checkP1Rekey starts a new Main Mode when this SA's time is near; the new
// SA replaces it once it is up.
func (sa *ikeSA) checkP1Rekey(now time.Time) error {
	if at := sa.rekeyP1At(); at.IsZero() || now.Before(at) {
		return nil
	}
	sa.replacing = true
	sa.r.log.Info("ike: rekeying the IKE SA before it expires (make-before-break)", "lifetime", sa.lifetime)
	next, err := sa.r.startPhase1()
	if err != nil {
		return err
	}
	next.replaces = sa
	return nil
}
