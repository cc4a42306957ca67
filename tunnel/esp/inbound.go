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
// decryption and the trailer check, then the window is updated (an
// unauthenticated packet must not move it; an authentic one with a bad
// trailer does, as before any trailer check). For AES-GCM the tag check
// and the decryption are one AEAD Open, which releases no plaintext unless
// the tag verifies.
//
// On success payload is a subslice of pkt (for L2TP: inner UDP header +
// L2TP) and nextHeader the ESP Next Header (17 for UDP; 59 marks a dummy
// packet the caller must drop, RFC 4303 §2.6). On error pkt's contents are
// unspecified. Errors are the bare sentinels ErrMalformed, ErrReplay,
// ErrAuth.
//
// Open is Unseal followed by Commit.
func (in *Inbound) Open(pkt []byte) (payload []byte, nextHeader byte, err error) {
	var u Unsealed
	in.Unseal(pkt, &u)
	return in.Commit(&u)
}

// Unsealed is a packet Unseal has authenticated and decrypted (or failed
// to) but whose sequence number is not yet in the anti-replay window:
// Commit decides. Its fields are Unseal's, for Commit only.
type Unsealed struct {
	payload    []byte
	seq        uint32
	nextHeader byte
	// state: unsealedBad (err, before the window check: final), unsealedRejected
	// (err: the pre-check or the ICV failed, Commit re-checks the window),
	// unsealedAuthentic (err is nil or a trailer error).
	state byte
	err   error
}

const (
	unsealedBad = iota
	unsealedRejected
	unsealedAuthentic
)

// Unseal is the part of Open that may run on several goroutines at once
// for packets of one SA: the checks, the anti-replay pre-check, the ICV
// and the decryption, in place. It does not change the window; Commit,
// called for each packet in the order the packets arrived, does. With
// Commit in arrival order the outcome for every packet is exactly Open's
// in that order, whatever the other goroutines Unseal meanwhile: the
// pre-check can only see fewer accepted packets than Open would have, so
// it rejects nothing Open would accept, and Commit repeats it.
func (in *Inbound) Unseal(pkt []byte, u *Unsealed) {
	*u = Unsealed{}
	s := in.s
	hr := hdrLen + s.ivLen
	ctLen := len(pkt) - hr - s.icvLen
	if ctLen < 2 || (!s.aead && ctLen%s.align != 0) {
		u.err = ErrMalformed
		return
	}
	if binary.BigEndian.Uint32(pkt[0:4]) != s.spi {
		u.err = ErrMalformed
		return
	}
	u.seq = binary.BigEndian.Uint32(pkt[4:8])
	u.state = unsealedRejected
	in.mu.Lock()
	fresh := in.win.check(u.seq)
	in.mu.Unlock()
	if !fresh {
		u.err = ErrReplay
		return
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
				u.err = ErrAuth
				return
			}
		} else if !s.openGCMShortTag(w, pkt[:hdrLen], body, icv) {
			u.err = ErrAuth
			return
		}
	} else {
		if subtle.ConstantTimeCompare(s.macSum(w, pkt[:hr+ctLen]), icv) != 1 {
			u.err = ErrAuth
			return
		}
		if s.cryptCBC(w, iv, body, false) != nil { // whole blocks (checked above), in place: cannot fail
			u.err = ErrMalformed
			return
		}
	}
	u.state = unsealedAuthentic

	// Trailer (RFC 4303 §2.4-2.6). The packet is authentic here, so these
	// checks leak nothing an attacker could use; they catch a buggy peer.
	padLen := int(body[ctLen-2])
	u.nextHeader = body[ctLen-1]
	if padLen+2 > ctLen {
		u.err = ErrMalformed
		return
	}
	payloadLen := ctLen - 2 - padLen
	for i, b := range body[payloadLen : ctLen-2] {
		if b != byte(i+1) {
			u.err = ErrMalformed
			return
		}
	}
	u.payload = body[:payloadLen]
}

// Commit finishes what Unseal began: an authentic packet's sequence number
// goes into the anti-replay window, unless it is there already or has
// fallen out to the left (ErrReplay: a duplicate Unsealed in parallel).
// It returns what Open would have.
func (in *Inbound) Commit(u *Unsealed) (payload []byte, nextHeader byte, err error) {
	switch u.state {
	case unsealedBad:
		return nil, 0, u.err
	case unsealedRejected:
		// Open's pre-check, against the window as it is now: a packet
		// whose ICV failed is a replay if Open would have said so first.
		if u.err != ErrReplay {
			in.mu.Lock()
			fresh := in.win.check(u.seq)
			in.mu.Unlock()
			if !fresh {
				return nil, 0, ErrReplay
			}
		}
		return nil, 0, u.err
	}
	if !in.commit(u.seq) {
		return nil, 0, ErrReplay
	}
	if u.err != nil {
		return nil, 0, u.err
	}
	return u.payload, u.nextHeader, nil
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
