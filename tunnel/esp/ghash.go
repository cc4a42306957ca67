package esp

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
)

// Software GCM verification for AES-GCM with an 8-byte ICV (transform 18).
// crypto/cipher refuses GCM tags shorter than 12 bytes, so Open computes the
// full tag itself (NIST SP 800-38D §7.2: T = MSB_t(E(K, J0) xor GHASH(A, C)))
// and then decrypts with CTR from inc32(J0). Only the rare ICV-8 suite pays
// for this; Seal still uses crypto/cipher and truncates (see suite.gcm).

// fieldElement is an element of GF(2^128) in GCM's bit order: bit 0 (the
// coefficient of x^0) is the most significant bit of hi.
type fieldElement struct{ hi, lo uint64 }

// ghashKey holds multiples of H = E(K, 0^128) for 4-bit table
// multiplication (Shoup's method).
type ghashKey struct {
	block cipher.Block
	// tab[v] = N(v)·H where the 4-bit value v has x^0 as its top bit.
	tab [16]fieldElement
}

// ghashReduce[k] is (k as the low 4 bits of lo)·x^4, i.e. the reduction of
// the four coefficients a right shift by 4 pushes past x^127. Only hi is
// non-zero (x^128 = 1 + x + x^2 + x^7).
var ghashReduce = func() (r [16]uint64) {
	for k := range r {
		v := fieldElement{0, uint64(k)}
		for range 4 {
			v = mulX(v)
		}
		r[k] = v.hi
	}
	return r
}()

func mulX(v fieldElement) fieldElement {
	carry := v.lo & 1
	v.lo = v.lo>>1 | v.hi<<63
	v.hi >>= 1
	if carry != 0 {
		v.hi ^= 0xE1 << 56
	}
	return v
}

func newGHASHKey(b cipher.Block) *ghashKey {
	var h [16]byte
	b.Encrypt(h[:], h[:])
	g := &ghashKey{block: b}
	g.tab[8] = fieldElement{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:])}
	g.tab[4] = mulX(g.tab[8])
	g.tab[2] = mulX(g.tab[4])
	g.tab[1] = mulX(g.tab[2])
	for v := 3; v < 16; v++ {
		if v&(v-1) == 0 {
			continue // powers of two are set above
		}
		var e fieldElement
		for bit := 1; bit < 16; bit <<= 1 {
			if v&bit != 0 {
				e.hi ^= g.tab[bit].hi
				e.lo ^= g.tab[bit].lo
			}
		}
		g.tab[v] = e
	}
	return g
}

// mul returns x·H (Horner over the 32 nibbles, last nibble first).
func (g *ghashKey) mul(x fieldElement) fieldElement {
	var z fieldElement
	for _, word := range [2]uint64{x.lo, x.hi} {
		for k := 0; k < 64; k += 4 {
			carry := z.lo & 0xF
			z.lo = z.lo>>4 | z.hi<<60
			z.hi = z.hi>>4 ^ ghashReduce[carry]
			t := &g.tab[(word>>k)&0xF]
			z.hi ^= t.hi
			z.lo ^= t.lo
		}
	}
	return z
}

// update absorbs data, zero-padded to a multiple of 16 bytes.
func (g *ghashKey) update(y fieldElement, data []byte) fieldElement {
	for len(data) > 0 {
		var blk [16]byte
		n := copy(blk[:], data)
		data = data[n:]
		y.hi ^= binary.BigEndian.Uint64(blk[:8])
		y.lo ^= binary.BigEndian.Uint64(blk[8:])
		y = g.mul(y)
	}
	return y
}

// tag computes the full 16-byte GCM tag of (aad, ciphertext) under the
// 12-byte nonce into out.
func (g *ghashKey) tag(out *[16]byte, nonce []byte, aad, ct []byte) {
	y := g.update(fieldElement{}, aad)
	y = g.update(y, ct)
	y.hi ^= uint64(len(aad)) * 8
	y.lo ^= uint64(len(ct)) * 8
	y = g.mul(y)
	// E(K, J0) with J0 = nonce | 0^31 | 1, built in out itself: a local
	// array passed to the cipher.Block interface would escape to the heap.
	*out = [16]byte{15: 1}
	copy(out[:12], nonce)
	g.block.Encrypt(out[:], out[:])
	binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(out[:8])^y.hi)
	binary.BigEndian.PutUint64(out[8:], binary.BigEndian.Uint64(out[8:])^y.lo)
}

// openGCMShortTag verifies icv (a truncated tag) in constant time and only
// then decrypts body in place. w.nonce must hold salt|IV.
func (s *suite) openGCMShortTag(w *work, aad, body, icv []byte) bool {
	g := s.gh
	g.tag(&w.icv, w.nonce[:], aad, body)
	if subtle.ConstantTimeCompare(w.icv[:len(icv)], icv) != 1 {
		return false
	}
	ctr := w.iv[:]
	copy(ctr[:12], w.nonce[:])
	ks := w.sum[:16]
	for n := uint32(2); len(body) > 0; n++ { // counter blocks start at inc32(J0)
		binary.BigEndian.PutUint32(ctr[12:], n)
		g.block.Encrypt(ks, ctr)
		k := subtle.XORBytes(body, body, ks)
		body = body[k:]
	}
	return true
}
