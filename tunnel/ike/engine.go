package ike

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/dh"
	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

const (
	inQueueLen    = 64
	eventQueueLen = 32
	maxTries      = 5 // transmissions of one request before giving up
	// mm5Tries bounds the wait for MM6. A server that answered MM2 and MM4
	// is alive; silence after MM5 means it could not decrypt or verify it,
	// almost always a wrong PSK, and the user should hear so within 10 s
	// (1 s + 2 s + 4 s), not after the full 31 s schedule.
	mm5Tries   = 3
	firstRetry = time.Second
	// renewGrace is how long the initiator waits, after the peer deleted
	// its last ESP SA, before it negotiates a new one itself. A server that
	// is stopping sends its ESP Deletes and the ISAKMP Delete in one burst
	// (RFC 2409 §5.7 lets either come first); a server that rekeys on its
	// own (SoftEther answers a Delete with a new Quick Mode) brings the new
	// SA within that time. Either way we must not start a third exchange.
	renewGrace     = 2 * time.Second
	nonceLen       = 32
	maxQMExchanges = 8
)

// NAT-T flavours agreed through vendor IDs (RFC 3947 §3.1, draft-02).
type natMode int

const (
	natNone natMode = iota
	natRFC
	natDraft
)

func (n natMode) natdType() uint8 {
	if n == natDraft {
		return PayloadNATDDraft
	}
	return PayloadNATD
}

func (n natMode) natoaType() uint8 {
	if n == natDraft {
		return PayloadNATOADraft
	}
	return PayloadNATOA
}

func (n natMode) encap() uint16 {
	if n == natDraft {
		return EncapUDPTransportDraft
	}
	return EncapUDPTransport
}

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

// qmExchange is one Quick Mode exchange, in either role.
type qmExchange struct {
	mid       uint32
	initiator bool // we sent QM1
	ni, nr    []byte
	inSPI     uint32
	outSPI    uint32
	alg       esp.Algorithm
	encap     uint16
	lifetime  time.Duration
	idci      []byte // raw ID bodies from QM1 (responder echoes them)
	idcr      []byte
	lastIn    []byte // last message received (duplicate detection)
	lastOut   []byte // our last message (resent on duplicates)
	done      bool
	rekeyOf   uint32 // inbound SPI of the child this one replaces
	// PFS (RFC 2409 §5.5): the group both sides use, our key, and
	// g(qm)^xy, which goes into KEYMAT. Zero/nil without PFS.
	group uint16
	dh    dh.PrivateKey
	gxy   []byte
}

type child struct {
	sa       ChildSA
	expires  time.Time
	rekeying bool
}

// engine is the state shared by both roles: one ISAKMP SA and its child SAs.
// Only the Run goroutine touches it.
type engine struct {
	initiator bool
	psk       []byte
	local     netip.AddrPort
	remote    netip.AddrPort
	l2tpPort  uint16
	p1Offer   []Phase1Transform // initiator: offered; responder: accepted
	p2Offer   []esp.Algorithm
	p1Life    time.Duration
	p2Life    time.Duration
	pfs       PFS  // initiator: the configured mode
	pfsNow    bool // initiator: our Quick Modes carry a KE
	reqPFS    bool // responder: refuse a Quick Mode without KE
	clk       clock.Clock
	log       *slog.Logger
	rand      io.Reader
	tr        Transport

	in      chan []byte
	dropped atomic.Uint64
	dpdAcks atomic.Uint64 // R-U-THERE-ACKs received
	do      chan func()   // test hook: run a function on the Run goroutine
	events  chan Event
	ctx     context.Context

	// phase 1
	ckyI, ckyR [8]byte
	chosen     Phase1Transform
	suite      ikev1.Suite
	dh         dh.PrivateKey
	saiB       []byte
	gxi, gxr   []byte
	ni, nr     []byte
	keys       ikev1.KeySet
	ivs        *ivManager
	nat        natMode
	dpd        bool
	floated    bool // send with natt=true
	p1Done     bool
	mm5Sent    bool
	mmLastIn   []byte
	mmLastOut  []byte

	pend     []*pending
	timer    clock.Timer
	timerAt  time.Time
	qms      []*qmExchange
	children []*child
	// renewAt is when the initiator starts a Quick Mode because the peer
	// deleted every ESP SA (zero: not pending). Without one the L2TP
	// tunnel would be cut off until the next reconnect.
	renewAt time.Time
	// abandoned is set once we deleted the ISAKMP SA alone: Run returns.
	abandoned bool
}

func newEngine(initiator bool, psk []byte, local netip.AddrPort, clk clock.Clock, log *slog.Logger, rnd io.Reader, tr Transport) (*engine, error) {
	if len(psk) == 0 {
		return nil, fmt.Errorf("%w: empty PSK", ErrConfig)
	}
	if tr == nil {
		return nil, fmt.Errorf("%w: nil transport", ErrConfig)
	}
	if !local.Addr().IsValid() {
		return nil, fmt.Errorf("%w: local address not set", ErrConfig)
	}
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &engine{
		initiator: initiator,
		psk:       append([]byte(nil), psk...),
		local:     local,
		clk:       clk,
		log:       log,
		rand:      rnd,
		tr:        tr,
		in:        make(chan []byte, inQueueLen),
		events:    make(chan Event, eventQueueLen),
		do:        make(chan func()),
	}, nil
}

func (e *engine) handlePacket(msg []byte) {
	select {
	case e.in <- msg:
	default:
		e.dropped.Add(1)
	}
}

func (e *engine) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		return nil, fmt.Errorf("ike: random source: %w", err)
	}
	return b, nil
}

// randomID returns a random non-zero 32-bit value >= min.
func (e *engine) randomID(min uint32) (uint32, error) {
	for i := 0; i < 64; i++ {
		b, err := e.random(4)
		if err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint32(b); v >= min && v != 0 {
			return v, nil
		}
	}
	return 0, errors.New("ike: random source returns only small values")
}

func (e *engine) emit(ev Event) {
	select {
	case e.events <- ev:
	case <-e.ctx.Done():
	}
}

// ---- sending, retransmission ----

func (e *engine) write(msg []byte, natt bool) {
	if err := e.tr.WriteIKE(msg, natt); err != nil {
		e.log.Debug("ike: write failed", "err", err)
	}
}

// sendReliable sends msg and retransmits it (1 s, 2 s, 4 s, ...) until
// ack(key) or maxTries; then giveUp decides the error.
func (e *engine) sendReliable(key uint32, msg []byte, natt bool, giveUp func() error) {
	e.sendReliableN(key, msg, natt, maxTries, giveUp)
}

// sendReliableN is sendReliable with its own transmission limit.
func (e *engine) sendReliableN(key uint32, msg []byte, natt bool, limit int, giveUp func() error) {
	e.ack(key)
	e.write(msg, natt)
	e.pend = append(e.pend, &pending{key: key, msg: msg, natt: natt, tries: 1, limit: limit, deadline: e.clk.Now().Add(firstRetry), giveUp: giveUp})
	e.armTimer()
}

func (e *engine) ack(key uint32) {
	for i, p := range e.pend {
		if p.key == key {
			e.pend = append(e.pend[:i], e.pend[i+1:]...)
			break
		}
	}
	e.armTimer()
}

func (e *engine) armTimer() {
	var next time.Time
	for _, p := range e.pend {
		if next.IsZero() || p.deadline.Before(next) {
			next = p.deadline
		}
	}
	for _, c := range e.children {
		if at := e.rekeyAt(c); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if !e.renewAt.IsZero() && (next.IsZero() || e.renewAt.Before(next)) {
		next = e.renewAt
	}
	if next.IsZero() {
		if e.timer != nil {
			e.timer.Stop()
		}
		e.timerAt = time.Time{}
		return
	}
	if next.Equal(e.timerAt) {
		return
	}
	d := next.Sub(e.clk.Now())
	if d < 0 {
		d = 0
	}
	if e.timer == nil {
		e.timer = e.clk.NewTimer(d)
	} else {
		e.timer.Stop()
		e.timer.Reset(d)
	}
	e.timerAt = next
}

func (e *engine) timerC() <-chan time.Time {
	if e.timer == nil {
		return nil
	}
	return e.timer.C()
}

func (e *engine) onTimer() error {
	now := e.clk.Now()
	e.timerAt = time.Time{}
	for i := 0; i < len(e.pend); i++ {
		p := e.pend[i]
		if p.deadline.After(now) {
			continue
		}
		if p.tries >= p.limit {
			e.pend = append(e.pend[:i], e.pend[i+1:]...)
			i--
			if p.giveUp != nil {
				if err := p.giveUp(); err != nil {
					return err
				}
			}
			continue
		}
		e.log.Debug("ike: retransmitting", "mid", p.key, "try", p.tries+1)
		e.write(p.msg, p.natt)
		p.deadline = now.Add(firstRetry << p.tries)
		p.tries++
	}
	if err := e.checkRekey(now); err != nil {
		return err
	}
	if err := e.checkRenew(now); err != nil {
		return err
	}
	e.armTimer()
	return nil
}

// ---- message assembly ----

func (e *engine) header(exch uint8, mid uint32, first uint8, flags uint8) Header {
	return Header{ICookie: e.ckyI, RCookie: e.ckyR, NextPayload: first, Version: isakmpVersion, Exchange: exch, Flags: flags, MessageID: mid}
}

// assemble builds a message from a payload chain, encrypting it if enc.
func (e *engine) assemble(exch uint8, mid uint32, b *builder, enc bool) []byte {
	body := b.buf
	var flags uint8
	if enc {
		body = e.ivs.encrypt(mid, body)
		flags = FlagEncryption
	}
	h := e.header(exch, mid, b.first, flags)
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
func (e *engine) hashedMessage(exch uint8, mid uint32, rest *builder) []byte {
	h := e.suite.QMHash1(e.keys.A, mid, rest.buf)
	return e.assemble(exch, mid, withHash(h, rest), true)
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
func (e *engine) decryptMsg(m *Message) (*decrypted, error) {
	if e.ivs == nil {
		return nil, errors.New("ike: encrypted message before keys exist")
	}
	plain, next, err := e.ivs.decrypt(m.MessageID, m.Ciphertext)
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

// ---- receive dispatch ----

// handle processes one received message; a non-nil error ends Run.
func (e *engine) handle(raw []byte, mm func(*Message, []byte) error) error {
	m, err := Parse(raw)
	if err != nil {
		e.log.Debug("ike: dropping malformed message", "err", err)
		return nil
	}
	if m.ICookie != e.ckyI && !(e.ckyI == [8]byte{} && !e.initiator) {
		e.log.Debug("ike: dropping message for another SA")
		return nil
	}
	if e.ckyR != ([8]byte{}) && m.RCookie != e.ckyR && m.RCookie != ([8]byte{}) {
		e.log.Debug("ike: dropping message with wrong responder cookie")
		return nil
	}
	switch m.Exchange {
	case ExchangeIdentityProtection:
		return mm(m, raw)
	case ExchangeQuickMode:
		if !e.p1Done {
			e.log.Debug("ike: quick mode before main mode finished")
			return nil
		}
		return e.handleQM(m, raw)
	case ExchangeInformational:
		return e.handleInformational(m)
	case ExchangeTransaction:
		e.log.Warn("ike: peer started a Transaction exchange (XAUTH/Mode-Config), not supported")
	default:
		e.log.Debug("ike: ignoring exchange", "type", m.Exchange)
	}
	return nil
}

// ---- informational ----

func (e *engine) handleInformational(m *Message) error {
	if m.Flags&FlagEncryption == 0 {
		for _, p := range All(m.Payloads, PayloadNotify) {
			n, err := ParseNotify(p.Body)
			if err != nil {
				continue
			}
			if err := e.onCleartextNotify(n); err != nil {
				return err
			}
		}
		return nil
	}
	d, err := e.decryptMsg(m)
	if err != nil {
		e.log.Debug("ike: undecryptable informational", "err", err)
		return e.onBadEncrypted(m)
	}
	hash, rest, ok := d.hashRest()
	if !ok || !hmac.Equal(hash, e.suite.QMHash1(e.keys.A, m.MessageID, rest)) {
		e.log.Warn("ike: informational with bad HASH(1), dropped")
		return e.onBadEncrypted(m)
	}
	e.ivs.set(m.MessageID, d.nextIV)
	for _, p := range d.payloads[1:] {
		switch p.Type {
		case PayloadNotify:
			n, err := ParseNotify(p.Body)
			if err != nil {
				continue
			}
			if err := e.onNotify(n); err != nil {
				return err
			}
		case PayloadDelete:
			del, err := ParseDelete(p.Body)
			if err != nil {
				continue
			}
			if err := e.onDelete(del); err != nil {
				return err
			}
		}
	}
	return nil
}

// onBadEncrypted is called for an encrypted message that did not verify.
func (e *engine) onBadEncrypted(m *Message) error {
	if e.initiator && !e.p1Done && e.mm5Sent {
		return fmt.Errorf("%w: peer's reply to MM5 does not decrypt (PSK mismatch likely)", ErrAuthFailed)
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

// onCleartextNotify handles an unauthenticated notify. It can only end a
// negotiation that has not finished yet.
func (e *engine) onCleartextNotify(n Notify) error {
	e.log.Info("ike: peer sent cleartext notify", "type", notifyName(n.Type))
	if e.p1Done || !e.initiator {
		return nil
	}
	switch {
	case n.Type == NotifyNoProposalChosen || n.Type == 13: // 13 ATTRIBUTES-NOT-SUPPORTED
		return fmt.Errorf("%w: phase 1: offered %s", ErrNoProposalChosen, p1List(e.p1Offer))
	case e.mm5Sent && isAuthNotify(n.Type):
		return fmt.Errorf("%w: peer says %s after MM5 (PSK mismatch likely)", ErrAuthFailed, notifyName(n.Type))
	}
	return nil
}

func (e *engine) onNotify(n Notify) error {
	switch n.Type {
	case NotifyRUThere:
		e.log.Debug("ike: DPD R-U-THERE", "seq", fmt.Sprintf("%x", n.Data))
		return e.sendInformational(func(b *builder) {
			b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyRUThereAck, SPI: e.cookies(), Data: n.Data}.encode())
		})
	case NotifyRUThereAck:
		e.dpdAcks.Add(1)
		return nil
	case NotifyInitialContact, NotifyResponderLifetime:
		return nil
	case NotifyNoProposalChosen:
		for _, q := range e.qms {
			if !q.initiator || q.done {
				continue
			}
			if e.pfs == PFSAuto && !e.pfsNow {
				// Perhaps the server requires PFS: offer it once.
				e.pfsNow = true
				q.done = true
				e.ack(q.mid)
				e.log.Info("ike: the server refused our Quick Mode; retrying with PFS", "group", groupName(e.chosen.Group))
				return e.startQM(q.rekeyOf)
			}
			pfs := " without PFS"
			if q.group != 0 {
				pfs = " with PFS " + groupName(q.group)
			}
			return fmt.Errorf("%w: phase 2: offered %s%s", ErrNoProposalChosen, p2List(e.p2Offer), pfs)
		}
	}
	if n.Type < 16384 {
		e.log.Warn("ike: peer reports error", "type", notifyName(n.Type))
		for _, q := range e.qms {
			if q.initiator && !q.done {
				return fmt.Errorf("%w: peer says %s", ErrPhase2Failed, notifyName(n.Type))
			}
		}
	} else {
		e.log.Info("ike: peer notify", "type", notifyName(n.Type))
	}
	return nil
}

func (e *engine) cookies() []byte {
	c := make([]byte, 16)
	copy(c, e.ckyI[:])
	copy(c[8:], e.ckyR[:])
	return c
}

func (e *engine) onDelete(d Delete) error {
	switch d.Protocol {
	case 1: // ISAKMP
		for _, s := range d.SPIs {
			if bytes.Equal(s, e.cookies()) {
				e.log.Info("ike: peer deleted the ISAKMP SA")
				return ErrDeleted
			}
		}
	case 3: // ESP: the SPI is the sender's inbound SPI (our outbound); accept either.
		for _, s := range d.SPIs {
			if len(s) != 4 {
				continue
			}
			spi := binary.BigEndian.Uint32(s)
			for i, c := range e.children {
				if c.sa.Outbound.SPI == spi || c.sa.Inbound.SPI == spi {
					e.children = append(e.children[:i], e.children[i+1:]...)
					e.log.Info("ike: peer deleted ESP SA", "inbound_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI))
					e.emit(ChildSADeleted{InboundSPI: c.sa.Inbound.SPI, ByPeer: true})
					break
				}
			}
		}
		if e.initiator && len(e.children) == 0 && e.renewAt.IsZero() {
			e.renewAt = e.clk.Now().Add(renewGrace)
		}
		e.armTimer()
	}
	return nil
}

// checkRenew starts a Quick Mode once renewGrace has passed since the peer
// deleted our last ESP SA, unless a new SA or an exchange for one came
// meanwhile.
func (e *engine) checkRenew(now time.Time) error {
	if e.renewAt.IsZero() || now.Before(e.renewAt) {
		return nil
	}
	e.renewAt = time.Time{}
	if len(e.children) > 0 {
		return nil
	}
	for _, q := range e.qms {
		if !q.done {
			return nil
		}
	}
	e.log.Info("ike: the server deleted our only IPsec SA; negotiating a new one")
	return e.startQM(0)
}

// sendInformational sends an encrypted Informational exchange with a fresh
// M-ID and HASH(1) (RFC 2409 §5.7).
func (e *engine) sendInformational(fill func(*builder)) error {
	mid, err := e.randomID(1)
	if err != nil {
		return err
	}
	rest := newBuilder()
	fill(rest)
	e.write(e.hashedMessage(ExchangeInformational, mid, rest), e.floated)
	return nil
}

// sendCleartextNotify sends an unencrypted Informational with one notify.
func (e *engine) sendCleartextNotify(t uint16) {
	mid, err := e.randomID(1)
	if err != nil {
		return
	}
	b := newBuilder()
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: t, SPI: e.cookies()}.encode())
	e.write(e.assemble(ExchangeInformational, mid, b, false), e.floated)
}

// shutdown sends Deletes for every child SA and then the ISAKMP SA.
func (e *engine) shutdown() {
	if !e.p1Done {
		return
	}
	e.log.Debug("ike: sending Deletes", "esp_sas", len(e.children))
	e.deleteChildren(false)
	_ = e.sendInformational(func(b *builder) {
		b.add(PayloadDelete, Delete{DOI: 1, Protocol: 1, SPIs: [][]byte{e.cookies()}}.encode())
	})
}

// deleteISAKMP sends a Delete for the ISAKMP SA alone, leaving its ESP SAs
// up (RFC 2409 §5.7: deleting an ISAKMP SA does not delete the SAs it
// negotiated), as Libreswan does when an IKE SA's lifetime ends; Run then
// returns.
func (e *engine) deleteISAKMP() {
	if !e.p1Done {
		return
	}
	_ = e.sendInformational(func(b *builder) {
		b.add(PayloadDelete, Delete{DOI: 1, Protocol: 1, SPIs: [][]byte{e.cookies()}}.encode())
	})
	e.abandoned = true
}

// deleteChildren sends a Delete for every ESP SA and forgets them, with a
// ChildSADeleted event each if report is set.
func (e *engine) deleteChildren(report bool) {
	for _, c := range e.children {
		spi := c.sa.Inbound.SPI
		_ = e.sendInformational(func(b *builder) {
			b.add(PayloadDelete, Delete{DOI: 1, Protocol: 3, SPIs: [][]byte{be32(spi)}}.encode())
		})
		if report {
			e.emit(ChildSADeleted{InboundSPI: spi})
		}
	}
	e.children = nil
	e.armTimer()
}

// ---- phase 1 helpers shared by both roles ----

// setupPhase1Keys derives SKEYID.. and the cipher once g^xy and both nonces are known.
func (e *engine) setupPhase1Keys(peerKE []byte) error {
	gxy, err := e.dh.SharedSecret(peerKE)
	if err != nil {
		return err
	}
	skeyid := e.suite.SKEYIDPSK(e.psk, e.ni, e.nr)
	e.keys = e.suite.DeriveKeys(skeyid, gxy, e.ckyI[:], e.ckyR[:])
	keyLen, bs, err := p1KeyLen(e.chosen.Enc, e.chosen.KeyBits)
	if err != nil {
		return err
	}
	blk, err := newP1Block(e.chosen.Enc, e.suite.EncryptionKey(e.keys.E, keyLen))
	if err != nil {
		return err
	}
	e.ivs = newIVManager(e.suite, blk, e.suite.Phase1IV(e.gxi, e.gxr, bs))
	return nil
}

// qmKey makes our Diffie-Hellman key for one Quick Mode with PFS.
func (e *engine) qmKey(group uint16) (dh.PrivateKey, error) {
	g, err := dh.ByID(group)
	if err != nil {
		return nil, fmt.Errorf("%w: PFS group %d: %v", ErrPhase2Failed, group, err)
	}
	return g.GenerateKey(e.rand)
}

func (e *engine) choosePhase1(t Phase1Transform) error {
	s, err := ikev1.NewSuite(ikev1.HashAlg(t.Hash))
	if err != nil {
		return err
	}
	g, err := dh.ByID(t.Group)
	if err != nil {
		return err
	}
	if _, _, err := p1KeyLen(t.Enc, t.KeyBits); err != nil {
		return err
	}
	dh, err := g.GenerateKey(e.rand)
	if err != nil {
		return err
	}
	e.chosen, e.suite, e.dh = t.normalized(), s, dh
	return nil
}

func vendorNAT(ps []Payload) (natMode, bool) {
	mode := natNone
	dpd := false
	for _, p := range All(ps, PayloadVendorID) {
		switch {
		case bytes.Equal(p.Body, vidRFC3947):
			mode = natRFC
		case bytes.Equal(p.Body, vidDraft02N) || bytes.Equal(p.Body, vidDraft02) || bytes.Equal(p.Body, vidDraft03):
			if mode == natNone {
				mode = natDraft
			}
		case bytes.Equal(p.Body, vidDPD):
			dpd = true
		}
	}
	return mode, dpd
}

func idFor(ap netip.AddrPort, proto uint8, port uint16) ID {
	a := ap.Addr().Unmap()
	t := IDIPv4Addr
	if a.Is6() {
		t = IDIPv6Addr
	}
	return ID{Type: t, Protocol: proto, Port: port, Data: a.AsSlice()}
}

func natoa(ap netip.AddrPort) []byte {
	id := idFor(ap, 0, 0)
	return append([]byte{id.Type, 0, 0, 0}, id.Data...)
}

// ---- Quick Mode (both roles) ----

func (e *engine) findQM(mid uint32) *qmExchange {
	for _, q := range e.qms {
		if q.mid == mid {
			return q
		}
	}
	return nil
}

func (e *engine) addQM(q *qmExchange) {
	if len(e.qms) >= maxQMExchanges {
		for i, old := range e.qms {
			if old.done {
				e.qms = append(e.qms[:i], e.qms[i+1:]...)
				break
			}
		}
	}
	if len(e.qms) >= maxQMExchanges {
		e.qms = e.qms[1:]
	}
	e.qms = append(e.qms, q)
}

// startQM sends QM1 for a transport-mode UDP-encapsulated ESP SA carrying
// L2TP: HASH(1), SA, Ni, IDci, IDcr, NAT-OAi, NAT-OAr (RFC 2409 §5.5,
// RFC 3947 §5).
func (e *engine) startQM(rekeyOf uint32) error {
	mid, err := e.randomID(1)
	if err != nil {
		return err
	}
	spi, err := e.randomID(256)
	if err != nil {
		return err
	}
	ni, err := e.random(nonceLen)
	if err != nil {
		return err
	}
	q := &qmExchange{mid: mid, initiator: true, ni: ni, inSPI: spi, rekeyOf: rekeyOf}
	if e.pfsNow {
		if q.dh, err = e.qmKey(e.chosen.Group); err != nil {
			return err
		}
		q.group = e.chosen.Group
	}
	// HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] (RFC 2409 §5.5), NAT-OAs.
	rest := newBuilder()
	rest.add(PayloadSA, encodeP2SA(spi, e.p2Offer, e.p2Life, e.nat.encap(), q.group))
	rest.add(PayloadNonce, ni)
	if q.dh != nil {
		rest.add(PayloadKE, q.dh.Public())
	}
	rest.add(PayloadID, idFor(e.local, 17, e.l2tpPort).encode())
	rest.add(PayloadID, idFor(e.remote, 17, 1701).encode())
	rest.add(e.nat.natoaType(), natoa(e.local))
	rest.add(e.nat.natoaType(), natoa(e.remote))
	msg := e.hashedMessage(ExchangeQuickMode, mid, rest)
	q.lastOut = msg
	e.addQM(q)
	e.log.Debug("ike: sending QM1", "mid", mid, "pfs_group", q.group)
	e.sendReliable(mid, msg, e.floated, func() error {
		return fmt.Errorf("%w: %w: no answer to QM1", ErrPhase2Failed, ErrTimeout)
	})
	return nil
}

func (e *engine) handleQM(m *Message, raw []byte) error {
	if m.Flags&FlagEncryption == 0 {
		e.log.Debug("ike: cleartext quick mode dropped")
		return nil
	}
	q := e.findQM(m.MessageID)
	if q != nil && bytes.Equal(q.lastIn, raw) {
		if q.lastOut != nil && (q.done || !q.initiator) {
			e.log.Debug("ike: duplicate quick mode message, resending our reply", "mid", m.MessageID)
			e.write(q.lastOut, e.floated)
		}
		return nil
	}
	d, err := e.decryptMsg(m)
	if err != nil {
		e.log.Debug("ike: undecryptable quick mode message", "err", err)
		return nil
	}
	hash, rest, ok := d.hashRest()
	if !ok {
		e.log.Debug("ike: quick mode message without HASH")
		return nil
	}
	switch {
	case q == nil:
		return e.qmResponderQM1(m, raw, d, hash, rest)
	case q.initiator && !q.done:
		return e.qmInitiatorQM2(q, raw, d, hash, rest)
	case !q.initiator && !q.done:
		return e.qmResponderQM3(q, raw, d, hash)
	}
	return nil
}

// qmInitiatorQM2 verifies HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest),
// accepts the chosen transform, sends QM3 and installs the child SA.
func (e *engine) qmInitiatorQM2(q *qmExchange, raw []byte, d *decrypted, hash, rest []byte) error {
	if !hmac.Equal(hash, e.suite.QMHash2(e.keys.A, q.mid, q.ni, rest)) {
		e.log.Warn("ike: QM2 HASH(2) mismatch, dropped")
		return nil
	}
	e.ivs.set(q.mid, d.nextIV)
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
	sa, err := ParseSA(saP.Body)
	if err != nil {
		return fail("QM2 SA: %v", err)
	}
	if len(sa.Proposals) != 1 || len(sa.Proposals[0].Transforms) != 1 || sa.Proposals[0].Protocol != 3 || len(sa.Proposals[0].SPI) != 4 {
		return fail("QM2 must choose one ESP transform")
	}
	prop := sa.Proposals[0]
	t, ok := p2FromTransform(&prop.Transforms[0])
	if !ok || !containsP2(e.p2Offer, t.alg) {
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
	q.lifetime = e.p2Life
	if l := lifetimeOf(prop.Transforms[0].Attrs, p2LifeType, p2LifeDur); l > 0 && l < q.lifetime {
		q.lifetime = l
	}
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
	}
	// QM3: HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
	h3 := e.suite.QMHash3(e.keys.A, q.mid, q.ni, q.nr)
	q.lastOut = e.assemble(ExchangeQuickMode, q.mid, withHash(h3, nil), true)
	e.ack(q.mid)
	e.write(q.lastOut, e.floated)
	q.done = true
	return e.installChild(q)
}

// qmResponderQM1 answers a Quick Mode started by the peer (our Responder, or
// a server-initiated rekey towards our Initiator).
func (e *engine) qmResponderQM1(m *Message, raw []byte, d *decrypted, hash, rest []byte) error {
	if !hmac.Equal(hash, e.suite.QMHash1(e.keys.A, m.MessageID, rest)) {
		e.log.Warn("ike: QM1 HASH(1) mismatch, dropped")
		return nil
	}
	e.ivs.set(m.MessageID, d.nextIV)
	saP := First(d.payloads, PayloadSA)
	niP := First(d.payloads, PayloadNonce)
	ids := All(d.payloads, PayloadID)
	reject := func(why string) error {
		e.log.Warn("ike: rejecting peer's quick mode", "why", why)
		return e.sendInformational(func(b *builder) {
			b.add(PayloadNotify, Notify{DOI: 1, Protocol: 3, Type: NotifyNoProposalChosen}.encode())
		})
	}
	if saP == nil || niP == nil || (len(ids) != 0 && len(ids) != 2) {
		return reject("QM1 without SA/nonce or with one ID")
	}
	keP := First(d.payloads, PayloadKE)
	if keP == nil && e.reqPFS {
		return reject("PFS required, but QM1 has no KE")
	}
	sa, err := ParseSA(saP.Body)
	if err != nil {
		return reject("bad SA")
	}
	// With a KE every transform names its group (RFC 2409 §5.5); we take
	// one whose group we have and whose KE length fits it.
	acceptable := func(t p2Transform) bool {
		if !containsP2(e.p2Offer, t.alg) || (t.encap != EncapUDPTransport && t.encap != EncapUDPTransportDraft) {
			return false
		}
		if keP == nil {
			return t.group == 0
		}
		g, err := dh.ByID(t.group)
		return err == nil && len(keP.Body) == g.PublicLen()
	}
	var (
		chosen *Transform
		prop   Proposal
		t      p2Transform
		found  bool
	)
	for _, p := range sa.Proposals {
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
		return reject("no acceptable ESP transform (offered " + describeP2(sa) + ")")
	}
	alg, encap := t.alg, t.encap
	spi, err := e.randomID(256)
	if err != nil {
		return err
	}
	nr, err := e.random(nonceLen)
	if err != nil {
		return err
	}
	q := &qmExchange{mid: m.MessageID, ni: append([]byte(nil), niP.Body...), nr: nr, inSPI: spi,
		outSPI: binary.BigEndian.Uint32(prop.SPI), alg: alg, encap: encap, lastIn: append([]byte(nil), raw...), group: t.group}
	if keP != nil {
		if q.dh, err = e.qmKey(t.group); err != nil {
			return err
		}
		if q.gxy, err = q.dh.SharedSecret(keP.Body); err != nil {
			return reject("bad KE")
		}
	}
	q.lifetime = e.p2Life
	if l := lifetimeOf(chosen.Attrs, p2LifeType, p2LifeDur); l > 0 && (q.lifetime == 0 || l < q.lifetime) {
		q.lifetime = l
	}
	if q.outSPI < 256 {
		return reject("reserved SPI")
	}
	// QM2: HASH(2), SA (the chosen transform, our SPI), Nr, [KE,] IDci, IDcr echoed.
	out := newBuilder()
	out.add(PayloadSA, encodeSA(3, be32(spi), []uint8{chosen.ID}, [][]attrPair{p2Attrs(alg, q.lifetime, encap, q.group)}))
	out.add(PayloadNonce, nr)
	if q.dh != nil {
		out.add(PayloadKE, q.dh.Public())
	}
	if len(ids) == 2 {
		out.add(PayloadID, ids[0].Body)
		out.add(PayloadID, ids[1].Body)
	}
	h2 := e.suite.QMHash2(e.keys.A, q.mid, q.ni, out.buf)
	q.lastOut = e.assemble(ExchangeQuickMode, q.mid, withHash(h2, out), true)
	e.addQM(q)
	e.sendReliable(q.mid, q.lastOut, e.floated, func() error {
		e.log.Warn("ike: no QM3 from peer, abandoning quick mode", "mid", q.mid)
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

func (e *engine) qmResponderQM3(q *qmExchange, raw []byte, d *decrypted, hash []byte) error {
	if !hmac.Equal(hash, e.suite.QMHash3(e.keys.A, q.mid, q.ni, q.nr)) {
		e.log.Warn("ike: QM3 HASH(3) mismatch, dropped")
		return nil
	}
	e.ivs.set(q.mid, d.nextIV)
	q.lastIn = append([]byte(nil), raw...)
	q.lastOut = nil
	q.done = true
	e.ack(q.mid)
	return e.installChild(q)
}

// installChild derives KEYMAT for both directions (RFC 2409 §5.5): each SA
// is keyed with its receiver's SPI; Ni_b/Nr_b are this Quick Mode's nonces.
func (e *engine) installChild(q *qmExchange) error {
	encLen, authLen, err := q.alg.KeymatLen()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPhase2Failed, err)
	}
	keys := func(spi uint32) esp.Keys {
		km := e.suite.Keymat(e.keys.D, q.gxy, 3, spi, q.ni, q.nr, encLen+authLen)
		return esp.Keys{SPI: spi, Alg: q.alg, EncKey: km[:encLen], AuthKey: km[encLen:]}
	}
	if !q.initiator {
		// The peer started this Quick Mode: it replaces the existing SAs
		// (server-side rekey), so we do not rekey those ourselves.
		for _, old := range e.children {
			old.rekeying = true
		}
	}
	c := &child{sa: ChildSA{Inbound: keys(q.inSPI), Outbound: keys(q.outSPI), Lifetime: q.lifetime, EncapMode: q.encap}}
	if q.group != 0 {
		c.sa.PFS = groupName(q.group)
	}
	if q.lifetime > 0 {
		c.expires = e.clk.Now().Add(q.lifetime)
	}
	e.children = append(e.children, c)
	e.log.Debug("ike: ESP SA up", "alg", q.alg.String(), "in_spi", fmt.Sprintf("%08x", q.inSPI),
		"out_spi", fmt.Sprintf("%08x", q.outSPI), "lifetime", q.lifetime, "encap", q.encap)
	e.emit(ChildSAUp{Child: c.sa})
	if q.rekeyOf != 0 {
		e.retireChild(q.rekeyOf)
	}
	e.armTimer()
	return nil
}

// retireChild deletes a replaced child SA: Delete to the peer, event locally.
func (e *engine) retireChild(inSPI uint32) {
	for i, c := range e.children {
		if c.sa.Inbound.SPI == inSPI {
			e.children = append(e.children[:i], e.children[i+1:]...)
			_ = e.sendInformational(func(b *builder) {
				b.add(PayloadDelete, Delete{DOI: 1, Protocol: 3, SPIs: [][]byte{be32(inSPI)}}.encode())
			})
			e.emit(ChildSADeleted{InboundSPI: inSPI})
			return
		}
	}
}

// rekeyAt is when the initiator starts a new Quick Mode for c: at 90% of
// its lifetime (zero time: never).
func (e *engine) rekeyAt(c *child) time.Time {
	if !e.initiator || c.rekeying || c.expires.IsZero() {
		return time.Time{}
	}
	return c.expires.Add(-c.sa.Lifetime / 10)
}

func (e *engine) checkRekey(now time.Time) error {
	for _, c := range e.children {
		if at := e.rekeyAt(c); !at.IsZero() && !at.After(now) {
			c.rekeying = true
			e.log.Info("ike: rekeying ESP SA", "in_spi", fmt.Sprintf("%08x", c.sa.Inbound.SPI))
			if err := e.startQM(c.sa.Inbound.SPI); err != nil {
				return err
			}
		}
	}
	return nil
}

// run is the shared event loop.
func (e *engine) run(ctx context.Context, start func() error, mm func(*Message, []byte) error) error {
	e.ctx = ctx
	defer func() {
		if e.timer != nil {
			e.timer.Stop()
		}
	}()
	if start != nil {
		if err := start(); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			if e.p1Done {
				e.shutdown()
				return nil
			}
			return ctx.Err()
		case raw := <-e.in:
			if err := e.handle(raw, mm); err != nil {
				return err
			}
		case f := <-e.do:
			f()
			if e.abandoned {
				return nil
			}
		case <-e.timerC():
			if err := e.onTimer(); err != nil {
				return err
			}
		}
	}
}
