package aescbc

import "encoding/binary"

// expandKey writes the round keys of key into enc (FIPS-197 §5.2,
// KeyExpansion) and those of the equivalent inverse cipher into dec
// (§5.3.5): dec[0] = enc[Nr], dec[r] = InvMixColumns(enc[Nr-r]) for
// 0 < r < Nr, dec[Nr] = enc[0], the order in which AESDEC and AESDECLAST
// take them (Intel's AES-NI white paper, "The Equivalent Inverse Cipher").
// Both are 16 * (Nr+1) bytes, each word big-endian: the bytes of round key
// r are w[4r..4r+3] in FIPS-197's order.
func expandKey(key, enc, dec []byte) {
	nk := len(key) / 4
	words := len(enc) / 4
	w := make([]uint32, words)
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < words; i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24 // SubWord(RotWord(t)) ^ Rcon[i/Nk]
			rcon = uint32(xtime(byte(rcon)))
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i, x := range w {
		binary.BigEndian.PutUint32(enc[4*i:], x)
	}
	nr := words/4 - 1
	copy(dec[:BlockSize], enc[BlockSize*nr:])
	for r := 1; r < nr; r++ {
		rk := dec[BlockSize*r : BlockSize*(r+1)]
		copy(rk, enc[BlockSize*(nr-r):])
		for col := 0; col < BlockSize; col += 4 {
			invMixColumn(rk[col : col+4])
		}
	}
	copy(dec[BlockSize*nr:], enc[:BlockSize])
	clear(w)
}

func subWord(x uint32) uint32 {
	return uint32(sbox[x>>24])<<24 | uint32(sbox[x>>16&0xff])<<16 |
		uint32(sbox[x>>8&0xff])<<8 | uint32(sbox[x&0xff])
}

// invMixColumn applies InvMixColumns (FIPS-197 §5.3.3) to one column.
func invMixColumn(c []byte) {
	a0, a1, a2, a3 := c[0], c[1], c[2], c[3]
	c[0] = mul(a0, 0x0e) ^ mul(a1, 0x0b) ^ mul(a2, 0x0d) ^ mul(a3, 0x09)
	c[1] = mul(a0, 0x09) ^ mul(a1, 0x0e) ^ mul(a2, 0x0b) ^ mul(a3, 0x0d)
	c[2] = mul(a0, 0x0d) ^ mul(a1, 0x09) ^ mul(a2, 0x0e) ^ mul(a3, 0x0b)
	c[3] = mul(a0, 0x0b) ^ mul(a1, 0x0d) ^ mul(a2, 0x09) ^ mul(a3, 0x0e)
}

// xtime multiplies by x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1
// (FIPS-197 §4.2.1).
func xtime(b byte) byte {
	return b<<1 ^ 0x1b&-(b>>7)
}

// mul multiplies in GF(2^8) (FIPS-197 §4.2).
func mul(a, b byte) byte {
	var p byte
	for ; b != 0; b >>= 1 {
		p ^= a & -(b & 1)
		a = xtime(a)
	}
	return p
}

// sbox is SubBytes' table (FIPS-197 §5.1.1, Figure 7), computed from its
// definition rather than copied: the multiplicative inverse in GF(2^8)
// (0 maps to 0), found through powers of the generator 3, then the affine
// transformation b ^ b<<<1 ^ b<<<2 ^ b<<<3 ^ b<<<4 ^ 0x63. The tests check
// it against the standard's vectors through whole encryptions.
var sbox = func() (s [256]byte) {
	var exp [255]byte
	var log [256]int
	p := byte(1)
	for i := range exp {
		exp[i], log[p] = p, i
		p ^= xtime(p) // p * 3
	}
	for x := range 256 {
		var inv byte
		if x != 0 {
			inv = exp[(255-log[x])%255]
		}
		s[x] = inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
	}
	return s
}()

func rotl(b byte, n uint) byte { return b<<n | b>>(8-n) }
