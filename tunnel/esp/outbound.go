package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync/atomic"
)

// Outbound is the sending half of an ESP SA (RFC 4303 transport mode).
//
// Safe for concurrent use: the only shared mutable state is the atomic
// sequence counter; per-packet cipher/HMAC state comes from a sync.Pool.
type Outbound struct {
	s *suite

	// seq is the last sequence number handed out (0 = none yet). It is a
	// uint64 so that Add can run past 2^32-1 without wrapping: every value
	// above math.MaxUint32 means "exhausted" (RFC 4303 §3.3.3).
	seq atomic.Uint64

	// limit is the most datagram bytes this SA may seal (0: no limit),
	// sealed the bytes it sealed so far (SetByteLimit).
	limit, sealed atomic.Uint64

	// ivCipher turns the (unique) sequence number into a CBC IV:
	// IV = AES-256_Kiv(0^64 | seq), Kiv random per SA and never sent.
	// RFC 3602 §3 requires CBC IVs to be unpredictable to an attacker; a
	// block cipher under a secret key, applied to inputs that never repeat,
	// gives exactly that (this is the first method of NIST SP 800-38A
	// App. C, "apply the forward cipher function to a nonce", here with an
	// independent key). It costs one AES block per packet instead of a
	// getrandom call (see BenchmarkIV* for both). For 3DES the first 8 bytes
	// are used. nil for AES-GCM, whose explicit IV must be unique, not
	// unpredictable (RFC 4106 §3.1): there we send the 64-bit counter.
	ivCipher cipher.Block

	// testIV, when set (tests only), overrides the IV for a given
	// sequence number so that published ESP packets can be reproduced.
	testIV func(seq uint64, iv []byte)
}

// NewOutbound sets up the sending side of an SA. rand (nil means
// crypto/rand.Reader) is read once, for the key of the CBC IV generator.
func NewOutbound(k Keys, random io.Reader) (*Outbound, error) {
	s, err := newSuite(k, true)
	if err != nil {
		return nil, err
	}
	if err := s.check(true); err != nil {
		return nil, err
	}
	o := &Outbound{s: s}
	if !s.aead {
		if random == nil {
			random = rand.Reader
		}
		var ivKey [32]byte
		if _, err := io.ReadFull(random, ivKey[:]); err != nil {
			return nil, fmt.Errorf("esp: IV key: %w", err)
		}
		o.ivCipher, _ = aes.NewCipher(ivKey[:]) // a 32-byte key cannot fail
		clear(ivKey[:])
	}
	return o, nil
}

// SPI returns the SPI written into every packet (the peer's inbound SPI).
func (o *Outbound) SPI() uint32 { return o.s.spi }

// Algorithm returns the suite of this SA.
func (o *Outbound) Algorithm() Algorithm { return o.s.alg }

// Headroom is the number of bytes Seal writes in front of the payload:
// SPI(4) | Seq(4) | IV (16 AES-CBC, 8 3DES-CBC, 8 AES-GCM).
func (o *Outbound) Headroom() int { return hdrLen + o.s.ivLen }

// Tailroom is the maximum number of bytes Seal needs after the payload:
// padding (at most align-1) | pad length | next header | ICV. For AES-GCM
// with an 8-byte ICV it includes 8 scratch bytes for the full GCM tag that
// is computed and then truncated.
func (o *Outbound) Tailroom() int {
	icv := o.s.icvLen
	if o.s.gh != nil {
		icv = 16
	}
	return o.s.align - 1 + 2 + icv
}

// Overhead returns the exact number of bytes Seal adds to a payload of
// payloadLen bytes (header, IV, padding, trailer, ICV): for MTU planning.
func (o *Outbound) Overhead(payloadLen int) int {
	return o.Headroom() + o.padLen(payloadLen) + 2 + o.s.icvLen
}

// SentSeq returns the last sequence number used (for lifetime accounting).
func (o *Outbound) SentSeq() uint64 { return min(o.seq.Load(), math.MaxUint32) }

// SetByteLimit caps what the SA may seal at limit bytes of ESP datagrams
// (SPI to ICV, so more than RFC 4301 §4.4.2.1 counts: the bytes the cipher
// is applied to; the peer's count never exceeds ours). A Seal that would
// take the total past limit fails with ErrByteLimit instead; a datagram
// that reaches it exactly is sealed. 0 removes the limit. Safe to call at
// any time: bytes sealed before count.
func (o *Outbound) SetByteLimit(limit uint64) { o.limit.Store(limit) }

// SealedBytes returns how many datagram bytes the SA has sealed.
func (o *Outbound) SealedBytes() uint64 { return o.sealed.Load() }

// SetSeqForTest makes the next sequence number seq+1: a test hook, to
// reach the end of the sequence number space without 2^32 packets.
func (o *Outbound) SetSeqForTest(seq uint64) { o.seq.Store(seq) }

// reserve adds n to the sealed bytes, unless that would pass the limit.
func (o *Outbound) reserve(n uint64) bool {
	for {
		had := o.sealed.Load()
		if l := o.limit.Load(); l != 0 && had+n > l {
			return false
		}
		if o.sealed.CompareAndSwap(had, had+n) {
			return true
		}
	}
}

// padLen returns the RFC 4303 §2.4 padding for a payload: payload|pad|
// padlen|nh must be a multiple of the cipher block size (CBC) or of 4 (GCM).
func (o *Outbound) padLen(payloadLen int) int {
	a := o.s.align
	return (a - (payloadLen+2)%a) % a
}

// Seal turns buf[off:] (the payload: for L2TP the inner UDP header and the
// L2TP message) into an ESP packet, in place.
//
// Layout on return, with hr = Headroom():
//
//	buf[off-hr : off]            SPI | Seq | IV
//	buf[off : off+n]             ciphertext of payload | 1,2,3.. | padlen | nextHeader
//	buf[off+n : off+n+ICV]       ICV over SPI..ciphertext (HMAC) / GCM tag
//
// Requirements: off >= Headroom() and cap(buf) >= len(buf)+Tailroom();
// otherwise ErrBufferSpace and buf is untouched. The returned packet is
// buf[off-hr : off+n+ICV] (same backing array). Bytes before off-hr are not
// touched, so a caller may keep its own outer headers there.
//
// Sequence numbers start at 1; after 2^32-1 every call fails with
// ErrSeqExhausted (no ESN). A datagram that would take the SA past its
// byte limit fails with ErrByteLimit, buf untouched. Safe for concurrent
// use on distinct buffers.
func (o *Outbound) Seal(buf []byte, off int, nextHeader byte) ([]byte, error) {
	return o.seal(nil, buf, off, nextHeader)
}

// SealTo is Seal that, for AES-CBC, leaves the encryption and the ICV to
// b.Finish, which encrypts four packets at a time (crypto/aescbc): the
// returned packet is framed (SPI, sequence number, IV, padding, its bytes
// counted against the SA's limit) but not ready to send until Finish.
// Other suites are sealed at once, as by Seal.
func (o *Outbound) SealTo(b *Batch, buf []byte, off int, nextHeader byte) ([]byte, error) {
	return o.seal(b, buf, off, nextHeader)
}

func (o *Outbound) seal(b *Batch, buf []byte, off int, nextHeader byte) ([]byte, error) {
	s := o.s
	hr := hdrLen + s.ivLen
	if off < hr || off > len(buf) {
		return nil, ErrBufferSpace
	}
	payloadLen := len(buf) - off
	padLen := o.padLen(payloadLen)
	ctLen := payloadLen + padLen + 2
	end := off + ctLen + s.icvLen
	scratchEnd := end
	if s.gh != nil {
		scratchEnd = off + ctLen + 16 // room for the untruncated GCM tag
	}
	if scratchEnd > cap(buf) || end < off /* overflow */ {
		return nil, ErrBufferSpace
	}
	if !o.reserve(uint64(end - (off - hr))) {
		return nil, ErrByteLimit
	}
	seq := o.seq.Add(1)
	if seq > math.MaxUint32 {
		return nil, ErrSeqExhausted
	}

	// Invariant from here: pkt = SPI|Seq|IV|body|ICV lies within cap(buf).
	pkt := buf[off-hr : end]
	binary.BigEndian.PutUint32(pkt[0:4], s.spi)
	binary.BigEndian.PutUint32(pkt[4:8], uint32(seq))
	iv := pkt[hdrLen:hr]
	body := pkt[hr : hr+ctLen]
	trailer := body[payloadLen:]
	for i := range padLen {
		trailer[i] = byte(i + 1) // RFC 4303 §2.4 default padding 1, 2, 3, ...
	}
	trailer[padLen] = byte(padLen)
	trailer[padLen+1] = nextHeader

	w := s.pool.Get().(*work)
	if s.aead {
		// RFC 4106 §3.1: the explicit IV must never repeat under a key;
		// the sequence counter never does.
		binary.BigEndian.PutUint64(iv, seq)
		if o.testIV != nil {
			o.testIV(seq, iv)
		}
		copy(w.nonce[saltLen:], iv) // nonce = salt | explicit IV (RFC 4106 §4)
		// AAD = SPI | Seq (RFC 4106 §5, no ESN). dst = body[:0]: exact
		// overlap, allowed; the tag lands right after the ciphertext.
		s.gcm.Seal(body[:0], w.nonce[:], body, pkt[:hdrLen])
		if s.gh != nil {
			clear(buf[end:scratchEnd]) // tail of the untruncated tag
		}
	} else {
		if o.testIV != nil {
			o.testIV(seq, iv)
		} else {
			binary.BigEndian.PutUint64(w.iv[8:], seq)
			clear(w.iv[:8])
			o.ivCipher.Encrypt(w.iv[:], w.iv[:])
			copy(iv, w.iv[:])
		}
		if b != nil && s.aesCBC != nil {
			s.pool.Put(w)
			b.pending = append(b.pending, deferred{s: s, pkt: pkt})
			return pkt, nil
		}
		if err := s.cryptCBC(w, iv, body, true); err != nil { // padded to whole blocks: cannot fail
			s.pool.Put(w)
			return nil, err
		}
		// Encrypt-then-MAC: ICV over SPI|Seq|IV|ciphertext (RFC 4303 §3.3.4).
		copy(pkt[hr+ctLen:], s.macSum(w, pkt[:hr+ctLen]))
	}
	s.pool.Put(w)
	return pkt, nil
}
