package esp

import (
	"crypto/subtle"
	"encoding/binary"
	"sync"
)

// Inbound is the receiving half of an ESP SA.
//
// Safe for concurrent use: per-packet crypto state comes from a sync.Pool;
// the anti-replay window is guarded by a mutex held only for a bitmap
// check or update (no crypto under the lock).
type Inbound struct {
	s *suite

	mu  sync.Mutex
	win replayWindow
}

// NewInbound sets up the receiving side of an SA (k.SPI is our SPI, the one
// the peer writes into its packets).
func NewInbound(k Keys) (*Inbound, error) {
	s, err := newSuite(k, false)
	if err != nil {
		return nil, err
	}
	if err := s.check(false); err != nil {
		return nil, err
	}
	return &Inbound{s: s}, nil
}

// SPI returns the SPI this SA accepts.
func (in *Inbound) SPI() uint32 { return in.s.spi }

// Algorithm returns the suite of this SA.
func (in *Inbound) Algorithm() Algorithm { return in.s.alg }

// Open authenticates and decrypts one ESP packet (the UDP 4500 payload of a
// datagram Classify called KindESP) in place.
//
// Order (RFC 4303 §3.4): SPI and length check, anti-replay pre-check (cheap
// rejection of duplicates before any crypto), constant-time ICV check,
// then the window is updated (only now: an unauthenticated packet must not
// move it), then decryption and the trailer check. For AES-GCM the tag
// check and the decryption are one AEAD Open, which releases no plaintext
// unless the tag verifies.
//
// On success payload is a subslice of pkt (for L2TP: inner UDP header +
// L2TP) and nextHeader the ESP Next Header (17 for UDP; 59 marks a dummy
// packet the caller must drop, RFC 4303 §2.6). On error pkt's contents are
// unspecified. Errors are the bare sentinels ErrMalformed, ErrReplay,
// ErrAuth.
func (in *Inbound) Open(pkt []byte) (payload []byte, nextHeader byte, err error) {
	s := in.s
	hr := hdrLen + s.ivLen
	ctLen := len(pkt) - hr - s.icvLen
	if ctLen < 2 || (!s.aead && ctLen%s.align != 0) {
		return nil, 0, ErrMalformed
	}
	if binary.BigEndian.Uint32(pkt[0:4]) != s.spi {
		return nil, 0, ErrMalformed
	}
	seq := binary.BigEndian.Uint32(pkt[4:8])
	in.mu.Lock()
	fresh := in.win.check(seq)
	in.mu.Unlock()
	if !fresh {
		return nil, 0, ErrReplay
	}

	// Invariant: hdr|iv|body|icv partition pkt exactly.
	iv := pkt[hdrLen:hr]
	body := pkt[hr : hr+ctLen]
	icv := pkt[hr+ctLen:]

	w := s.pool.Get().(*work)
	defer s.pool.Put(w)
	if s.aead {
		copy(w.nonce[saltLen:], iv)
		if s.gh == nil {
			if _, err := s.gcm.Open(body[:0], w.nonce[:], pkt[hr:], pkt[:hdrLen]); err != nil {
				return nil, 0, ErrAuth
			}
		} else if !s.openGCMShortTag(w, pkt[:hdrLen], body, icv) {
			return nil, 0, ErrAuth
		}
		if !in.commit(seq) {
			return nil, 0, ErrReplay
		}
	} else {
		if subtle.ConstantTimeCompare(s.macSum(w, pkt[:hr+ctLen]), icv) != 1 {
			return nil, 0, ErrAuth
		}
		if !in.commit(seq) {
			return nil, 0, ErrReplay
		}
		w.setIV.SetIV(iv)
		w.cbc.CryptBlocks(body, body)
	}

	// Trailer (RFC 4303 §2.4-2.6). The packet is authentic here, so these
	// checks leak nothing an attacker could use; they catch a buggy peer.
	padLen := int(body[ctLen-2])
	nextHeader = body[ctLen-1]
	if padLen+2 > ctLen {
		return nil, 0, ErrMalformed
	}
	payloadLen := ctLen - 2 - padLen
	for i, b := range body[payloadLen : ctLen-2] {
		if b != byte(i+1) {
			return nil, 0, ErrMalformed
		}
	}
	return body[:payloadLen], nextHeader, nil
}

// commit marks seq as received; false if another goroutine got there first.
func (in *Inbound) commit(seq uint32) bool {
	in.mu.Lock()
	ok := in.win.update(seq)
	in.mu.Unlock()
	return ok
}

// HighestSeq returns the highest authenticated sequence number received.
func (in *Inbound) HighestSeq() uint32 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.win.top
}
