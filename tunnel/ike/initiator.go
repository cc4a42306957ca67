package ike

import (
	"bytes"
	"context"
	"crypto/hmac"
	"fmt"

	"github.com/l2tpproxy/l2tpproxy/crypto/dh"
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

type initState int

const (
	iMM1Sent initState = iota
	iMM3Sent
	iMM5Sent
	iEstablished
)

// Initiator is the client side: Main Mode PSK, then Quick Mode, then it
// serves Informational exchanges until its context ends.
type Initiator struct {
	e     *engine
	state initState
}

// NewInitiator validates cfg and returns an Initiator that sends through tr.
func NewInitiator(cfg Config, tr Transport) (*Initiator, error) {
	e, err := newEngine(true, cfg.PSK, cfg.LocalAddr, cfg.Clock, cfg.Logger, cfg.Rand, tr)
	if err != nil {
		return nil, err
	}
	if !cfg.RemoteAddr.Addr().IsValid() {
		return nil, fmt.Errorf("%w: remote address not set", ErrConfig)
	}
	e.remote = cfg.RemoteAddr
	e.l2tpPort = cfg.L2TPPort
	if e.l2tpPort == 0 {
		e.l2tpPort = 1701
	}
	e.p1Offer, e.p2Offer = cfg.Phase1, cfg.Phase2
	if e.p1Offer == nil {
		e.p1Offer = DefaultPhase1
	}
	if e.p2Offer == nil {
		e.p2Offer = DefaultPhase2
	}
	if len(e.p1Offer) == 0 || len(e.p2Offer) == 0 || len(e.p1Offer) > 64 || len(e.p2Offer) > 64 {
		return nil, fmt.Errorf("%w: need 1..64 phase-1 and phase-2 transforms", ErrConfig)
	}
	for _, t := range e.p1Offer {
		if _, _, err := p1KeyLen(t.Enc, t.KeyBits); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if _, err := dh.ByID(t.Group); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	for _, a := range e.p2Offer {
		if _, _, err := a.KeymatLen(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	switch cfg.PFS {
	case PFSAuto, PFSOff:
	case PFSOn:
		e.pfsNow = true
	default:
		return nil, fmt.Errorf("%w: unknown PFS mode %d", ErrConfig, cfg.PFS)
	}
	e.pfs = cfg.PFS
	e.p1Life, e.p2Life = cfg.Phase1Lifetime, cfg.Phase2Lifetime
	if e.p1Life <= 0 {
		e.p1Life = defaultP1Life
	}
	if e.p2Life <= 0 {
		e.p2Life = defaultP2Life
	}
	return &Initiator{e: e}, nil
}

// HandlePacket queues one received ISAKMP message (non-ESP marker already
// stripped); ownership of msg passes to the Initiator. It never blocks: when
// the queue is full the message is dropped and counted (Dropped).
func (s *Initiator) HandlePacket(msg []byte) { s.e.handlePacket(msg) }

// Dropped reports how many messages HandlePacket dropped on a full queue.
func (s *Initiator) Dropped() uint64 { return s.e.dropped.Load() }

// Events returns the buffered event channel.
func (s *Initiator) Events() <-chan Event { return s.e.events }

// Run negotiates Main Mode and Quick Mode, emits Phase1Up and ChildSAUp,
// answers DPD and handles Deletes, and rekeys the ESP SA before it expires.
// When ctx ends after phase 1 it sends Deletes (ESP SAs, then the ISAKMP SA)
// and returns nil. Fatal conditions return wrapped ErrTimeout,
// ErrNoProposalChosen, ErrAuthFailed, ErrPhase2Failed, ErrDeleted or
// ErrNATTUnsupported.
func (s *Initiator) Run(ctx context.Context) error {
	return s.e.run(ctx, s.sendMM1, s.handleMM)
}

// sendMM1: HDR, SA, VID(RFC 3947), VID(draft-02\n), VID(draft-03),
// VID(draft-02), VID(DPD) (RFC 2409 §5.4, RFC 3947 §3.1).
func (s *Initiator) sendMM1() error {
	e := s.e
	c, err := e.random(8)
	if err != nil {
		return err
	}
	copy(e.ckyI[:], c)
	b := newBuilder()
	b.add(PayloadSA, encodeP1SA(e.p1Offer, e.p1Life))
	e.saiB = append([]byte(nil), b.buf[genericHeaderLength:]...)
	for _, v := range [][]byte{vidRFC3947, vidDraft02N, vidDraft03, vidDraft02, vidDPD} {
		b.add(PayloadVendorID, v)
	}
	msg := e.assemble(ExchangeIdentityProtection, 0, b, false)
	e.log.Debug("ike: sending MM1", "transforms", len(e.p1Offer))
	e.sendReliable(0, msg, false, func() error {
		return fmt.Errorf("%w: no answer to MM1 from %s (server unreachable, or it silently rejected all of: %s)", ErrTimeout, e.remote, p1List(e.p1Offer))
	})
	return nil
}

func (s *Initiator) handleMM(m *Message, raw []byte) error {
	e := s.e
	if bytes.Equal(raw, e.mmLastIn) {
		return nil // a retransmitted reply; our own timer resends the request
	}
	switch s.state {
	case iMM1Sent:
		if m.Flags&FlagEncryption != 0 || m.RCookie == ([8]byte{}) {
			return nil
		}
		return s.onMM2(m, raw)
	case iMM3Sent:
		if m.Flags&FlagEncryption != 0 || m.RCookie != e.ckyR {
			return nil
		}
		return s.onMM4(m, raw)
	case iMM5Sent:
		if m.Flags&FlagEncryption == 0 {
			return nil // late MM4 retransmission
		}
		return s.onMM6(m, raw)
	}
	return nil
}

func (s *Initiator) onMM2(m *Message, raw []byte) error {
	e := s.e
	saP := First(m.Payloads, PayloadSA)
	if saP == nil {
		e.log.Debug("ike: MM2 without SA")
		return nil
	}
	sa, err := ParseSA(saP.Body)
	if err != nil || len(sa.Proposals) != 1 || len(sa.Proposals[0].Transforms) != 1 {
		return fmt.Errorf("%w: MM2 must choose exactly one transform", ErrNoProposalChosen)
	}
	t, ok := p1FromTransform(&sa.Proposals[0].Transforms[0])
	if !ok || !containsP1(e.p1Offer, t) {
		return fmt.Errorf("%w: server chose %s which we did not offer (offered %s)", ErrNoProposalChosen, t.short(), p1List(e.p1Offer))
	}
	e.nat, e.dpd = vendorNAT(m.Payloads)
	if e.nat == natNone {
		return fmt.Errorf("%w: no NAT-T vendor ID in MM2; ESP-in-UDP is impossible", ErrNATTUnsupported)
	}
	if err := e.choosePhase1(t); err != nil {
		return fmt.Errorf("%w: %v", ErrNoProposalChosen, err)
	}
	e.ckyR = m.RCookie
	e.mmLastIn = append([]byte(nil), raw...)
	ni, err := e.random(nonceLen)
	if err != nil {
		return err
	}
	e.ni, e.gxi = ni, e.dh.Public()
	// MM3: KE, Ni, NAT-D(peer as we address it), NAT-D(us) faked with
	// random bytes so the responder always detects a NAT and floats to
	// 4500 (strongSwan forceencaps, RFC 3947 §3.2).
	fake, err := e.random(e.suite.Size())
	if err != nil {
		return err
	}
	b := newBuilder()
	b.add(PayloadKE, e.gxi)
	b.add(PayloadNonce, e.ni)
	b.add(e.nat.natdType(), e.suite.NATD(e.ckyI[:], e.ckyR[:], e.remote))
	b.add(e.nat.natdType(), fake)
	s.state = iMM3Sent
	e.log.Debug("ike: MM2 accepted, sending MM3", "suite", t.String(), "natt", e.nat)
	e.sendReliable(0, e.assemble(ExchangeIdentityProtection, 0, b, false), false, func() error {
		return fmt.Errorf("%w: no answer to MM3", ErrTimeout)
	})
	return nil
}

func (s *Initiator) onMM4(m *Message, raw []byte) error {
	e := s.e
	ke := First(m.Payloads, PayloadKE)
	nr := First(m.Payloads, PayloadNonce)
	if ke == nil || nr == nil || len(nr.Body) < 8 || len(nr.Body) > 256 {
		e.log.Debug("ike: MM4 without KE/nonce")
		return nil
	}
	if len(ke.Body) != e.dh.Group().PublicLen() {
		e.log.Debug("ike: MM4 KE has wrong length", "len", len(ke.Body))
		return nil
	}
	if len(All(m.Payloads, e.nat.natdType())) == 0 {
		e.log.Warn("ike: server sent no NAT-D payloads; floating to 4500 anyway")
	}
	e.nr = append([]byte(nil), nr.Body...)
	e.gxr = append([]byte(nil), ke.Body...)
	if err := e.setupPhase1Keys(e.gxr); err != nil {
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	e.mmLastIn = append([]byte(nil), raw...)
	// MM5 (encrypted, port 4500): IDii, HASH_I, N(INITIAL-CONTACT).
	id := idFor(e.local, 0, 0).encode()
	hashI := e.suite.HashI(e.keys.SKEYID, e.gxi, e.gxr, e.ckyI[:], e.ckyR[:], e.saiB, id)
	b := newBuilder()
	b.add(PayloadID, id)
	b.add(PayloadHash, hashI)
	b.add(PayloadNotify, Notify{DOI: 1, Protocol: 1, Type: NotifyInitialContact, SPI: e.cookies()}.encode())
	e.floated = true
	s.state = iMM5Sent
	e.mm5Sent = true
	e.sendReliableN(0, e.assemble(ExchangeIdentityProtection, 0, b, true), true, mm5Tries, func() error {
		return fmt.Errorf("%w: no MM6 after %d tries of MM5: phase-1 authentication failed: PSK mismatch likely", ErrAuthFailed, mm5Tries)
	})
	return nil
}

func (s *Initiator) onMM6(m *Message, raw []byte) error {
	e := s.e
	d, err := e.decryptMsg(m)
	if err != nil {
		return fmt.Errorf("%w: MM6 does not decrypt (%v): PSK mismatch likely", ErrAuthFailed, err)
	}
	idP := First(d.payloads, PayloadID)
	hP := First(d.payloads, PayloadHash)
	if idP == nil || hP == nil {
		return fmt.Errorf("%w: MM6 without ID or HASH: PSK mismatch likely", ErrAuthFailed)
	}
	want := e.suite.HashR(e.keys.SKEYID, e.gxi, e.gxr, e.ckyI[:], e.ckyR[:], e.saiB, idP.Body)
	if !hmac.Equal(hP.Body, want) {
		return fmt.Errorf("%w: HASH_R does not verify: PSK mismatch likely", ErrAuthFailed)
	}
	e.ivs.set(0, d.nextIV)
	e.ivs.freeze()
	e.ack(0)
	e.mmLastIn = append([]byte(nil), raw...)
	e.p1Done = true
	s.state = iEstablished
	if id, err := ParseID(idP.Body); err == nil {
		e.log.Debug("ike: phase 1 up", "suite", e.chosen.String(), "peer_id_type", id.Type, "peer_id", fmt.Sprintf("%x", id.Data))
	}
	e.emit(Phase1Up{Suite: e.chosen.String()})
	return e.startQM(0)
}
