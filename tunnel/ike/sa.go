package ike

import (
	"errors"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
)

// pending is a request we retransmit until it is answered.
type pending struct {
	key      uint32 // M-ID (0 for Main Mode)
	msg      []byte
	natt     bool
	tries    int
	limit    int // transmissions before giveUp
	deadline time.Time
	giveUp   func() error
}

type child struct {
	sa       ChildSA
	upAt     time.Time // installed
	expires  time.Time
	rekeying bool
	retireAt time.Time // replaced by a rekey: deleted then (retireDelay)
}

// ikeSA is one ISAKMP SA (RFC 2408 §2.4 "ISAKMP SA", strongSwan's ike_sa):
// its cookies, its keys (SKEYID_d/a/e), the IV chain of every message ID,
// its lifetime, the exchanges running on it and the ESP SAs it negotiated.
// Only the Run goroutine touches it.
type ikeSA struct {
	r         *runner
	initiator bool // we sent MM1

	ckyI, ckyR [8]byte
	chosen     Phase1Transform
	suite      ikev1.Suite
	keys       ikev1.KeySet
	ivs        *ivManager
	nat        natMode
	peerDPD    bool // the peer sent the RFC 3706 vendor ID
	peerFrag   bool // the peer sent the FRAGMENTATION vendor ID (fragment.go)
	floated    bool // send with natt=true (port 4500, non-ESP marker)
	up         bool // Main Mode finished
	lifetime   time.Duration
	upAt       time.Time
	replacing  bool   // a new SA is being negotiated to replace this one
	replaces   *ikeSA // the SA this one replaces once it is up

	mm       *mainMode
	am       *aggressiveMode // instead of mm, in Aggressive Mode
	qms      []*quickMode
	children []*child
	pend     []*pending
	// peerQMIDs are the IDci/IDcr bodies of the last Quick Mode the peer
	// started (a responder reuses them when it rekeys).
	peerQMIDs [][]byte
	// renewAt is when the initiator starts a Quick Mode because the peer
	// deleted every ESP SA (zero: not pending). Without one the L2TP
	// tunnel would be cut off until the next reconnect.
	renewAt time.Time
}

func (sa *ikeSA) cookies() []byte {
	c := make([]byte, 16)
	copy(c, sa.ckyI[:])
	copy(c[8:], sa.ckyR[:])
	return c
}

// ---- sending, retransmission ----

func (sa *ikeSA) write(msg []byte, natt bool) {
	if sa.writeMaybeFragmented(msg, natt) {
		return
	}
	if err := sa.r.tr.WriteIKE(msg, natt); err != nil {
		sa.r.log.Debug("ike: write failed", "err", err)
	}
}

// sendReliable sends msg and retransmits it (1 s, 2 s, 4 s, ...) until
// ack(key) or maxTries; then giveUp decides the error.
func (sa *ikeSA) sendReliable(key uint32, msg []byte, natt bool, giveUp func() error) {
	sa.sendReliableN(key, msg, natt, maxTries, giveUp)
}

// sendReliableN is sendReliable with its own transmission limit.
func (sa *ikeSA) sendReliableN(key uint32, msg []byte, natt bool, limit int, giveUp func() error) {
	sa.ack(key)
	sa.write(msg, natt)
	sa.pend = append(sa.pend, &pending{key: key, msg: msg, natt: natt, tries: 1, limit: limit,
		deadline: sa.r.clk.Now().Add(firstRetry), giveUp: giveUp})
	sa.r.armTimer()
}

func (sa *ikeSA) ack(key uint32) {
	for i, p := range sa.pend {
		if p.key == key {
			sa.pend = append(sa.pend[:i], sa.pend[i+1:]...)
			break
		}
	}
	sa.r.armTimer()
}

// nextDeadline is the earliest time this SA's timer work is due (zero:
// none): a retransmission, a rekey, a renewal.
func (sa *ikeSA) nextDeadline() time.Time {
	var next time.Time
	min := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, p := range sa.pend {
		min(p.deadline)
	}
	for _, c := range sa.children {
		min(sa.rekeyAt(c))
		min(expireAt(c))
		min(c.retireAt)
	}
	min(sa.renewAt)
	min(sa.rekeyP1At())
	return next
}

// onTimer retransmits what is due, gives up what has run out of tries, and
// starts due rekeys and renewals.
func (sa *ikeSA) onTimer(now time.Time) error {
	for i := 0; i < len(sa.pend); i++ {
		p := sa.pend[i]
		if p.deadline.After(now) {
			continue
		}
		if p.tries >= p.limit {
			sa.pend = append(sa.pend[:i], sa.pend[i+1:]...)
			i--
			if p.giveUp != nil {
				if err := p.giveUp(); err != nil {
					return err
				}
			}
			continue
		}
		sa.r.log.Debug("ike: retransmitting", "mid", p.key, "try", p.tries+1)
		sa.write(p.msg, p.natt)
		p.deadline = now.Add(firstRetry << p.tries)
		p.tries++
	}
	sa.retireChildren(now)
	sa.expireChildren(now)
	if err := sa.checkRekey(now); err != nil {
		return err
	}
	if err := sa.checkP1Rekey(now); err != nil {
		return err
	}
	return sa.checkRenew(now)
}

// ---- message assembly ----

func (sa *ikeSA) header(exch uint8, mid uint32, first uint8, flags uint8) Header {
	return Header{ICookie: sa.ckyI, RCookie: sa.ckyR, NextPayload: first, Version: isakmpVersion, Exchange: exch, Flags: flags, MessageID: mid}
}

// assemble builds a message from a payload chain, encrypting it if enc.
func (sa *ikeSA) assemble(exch uint8, mid uint32, b *builder, enc bool) []byte {
	body := b.buf
	var flags uint8
	if enc {
		body = sa.ivs.encrypt(mid, body)
		flags = FlagEncryption
	}
	h := sa.header(exch, mid, b.first, flags)
	h.Length = uint32(HeaderLen + len(body))
	out := h.AppendTo(make([]byte, 0, int(h.Length)))
	return append(out, body...)
}

// withHash prepends a HASH payload carrying hash to rest.
func withHash(hash []byte, rest *builder) *builder {
	b := newBuilder()
	b.add(PayloadHash, hash)
	if rest != nil && len(rest.buf) > 0 {
		b.buf[0] = rest.first
		b.buf = append(b.buf, rest.buf...)
	}
	return b
}

// hashedMessage builds an encrypted Quick Mode/Informational message whose
// HASH(1) = prf(SKEYID_a, M-ID | rest) (RFC 2409 §5.5, §5.7).
func (sa *ikeSA) hashedMessage(exch uint8, mid uint32, rest *builder) []byte {
	h := sa.suite.QMHash1(sa.keys.A, mid, rest.buf)
	return sa.assemble(exch, mid, withHash(h, rest), true)
}

// decrypted is an authenticated-or-not decrypted message.
type decrypted struct {
	hdr      Header
	payloads []Payload
	plain    []byte
	end      int // end of the payload chain in plain
	nextIV   []byte
}

// decryptMsg decrypts m with the IV chain of its M-ID (not committed).
func (sa *ikeSA) decryptMsg(m *Message) (*decrypted, error) {
	if sa.ivs == nil {
		return nil, errors.New("ike: encrypted message before keys exist")
	}
	plain, next, err := sa.ivs.decrypt(m.MessageID, m.Ciphertext)
	if err != nil {
		return nil, err
	}
	ps, end, err := ParsePayloads(m.NextPayload, plain)
	if err != nil {
		return nil, err
	}
	return &decrypted{hdr: m.Header, payloads: ps, plain: plain, end: end, nextIV: next}, nil
}

// hashRest returns the HASH payload body and the bytes after it (RFC 2409
// §5.5: all following payloads with headers, without padding).
func (d *decrypted) hashRest() (hash, rest []byte, ok bool) {
	if len(d.payloads) == 0 || d.payloads[0].Type != PayloadHash {
		return nil, nil, false
	}
	n := len(d.payloads[0].Raw)
	return d.payloads[0].Body, d.plain[n:d.end], true
}

// handle processes one message addressed to this SA; a non-nil error ends Run.
func (sa *ikeSA) handle(m *Message, raw []byte) error {
	switch m.Exchange {
	case ExchangeIdentityProtection:
		if sa.mm == nil {
			return nil
		}
		return sa.mm.process(sa, m, raw)
	case ExchangeAggressive:
		if sa.am == nil {
			return nil
		}
		return sa.am.process(sa, m, raw)
	case ExchangeQuickMode:
		if !sa.up {
			sa.r.log.Debug("ike: quick mode before main mode finished")
			return nil
		}
		return sa.handleQM(m, raw)
	case ExchangeInformational:
		return sa.handleInformational(m)
	case ExchangeTransaction:
		sa.r.log.Warn("ike: peer started a Transaction exchange (XAUTH/Mode-Config), not supported")
	default:
		sa.r.log.Debug("ike: ignoring exchange", "type", m.Exchange)
	}
	return nil
}
