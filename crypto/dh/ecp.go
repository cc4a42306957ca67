package dh

import (
	"crypto/ecdh"
	"fmt"
	"io"
)

// ecpGroup is a random ECP group of RFC 5903 (§3.1 group 19 on P-256, §3.2
// group 20 on P-384, §3.3 group 21 on P-521), computed with crypto/ecdh.
type ecpGroup struct {
	id    uint16
	bits  int
	curve ecdh.Curve
	flen  int  // field element length in bytes
	mask  byte // top-byte mask for drawing a scalar of the order's length
}

var ecpGroups = map[uint16]*ecpGroup{
	19: {id: 19, bits: 256, curve: ecdh.P256(), flen: 32, mask: 0xff},
	20: {id: 20, bits: 384, curve: ecdh.P384(), flen: 48, mask: 0xff},
	21: {id: 21, bits: 521, curve: ecdh.P521(), flen: 66, mask: 0x01},
}

func (g *ecpGroup) ID() uint16     { return g.id }
func (g *ecpGroup) String() string { return fmt.Sprintf("ECP%d", g.bits) }

// PublicLen is 2 field lengths: RFC 5903 §7 encodes the KE payload as x | y,
// each left-padded to the field length, without the SEC1 0x04 prefix.
func (g *ecpGroup) PublicLen() int { return 2 * g.flen }

// maxDraws bounds rejection sampling. A draw is rejected only when it is 0
// or not below the group order: below 2^-32 per draw for P-256 and P-384,
// below 1/2 for P-521 (order just under 2^521, top byte masked to 0x01).
const maxDraws = 64

// GenerateKey draws a scalar in [1, n-1] from rand by rejection sampling,
// so a deterministic rand gives a deterministic key (tests) and a uniform
// one gives a uniform scalar. crypto/ecdh's own GenerateKey ignores its
// reader since Go 1.26.
func (g *ecpGroup) GenerateKey(rand io.Reader) (PrivateKey, error) {
	buf := make([]byte, g.flen)
	for range maxDraws {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("dh: reading random scalar: %w", err)
		}
		buf[0] &= g.mask
		k, err := g.curve.NewPrivateKey(buf)
		if err != nil {
			continue // 0 or >= n: draw again
		}
		return g.key(k), nil
	}
	return nil, fmt.Errorf("dh: %v: no valid scalar in %d draws (broken random source)", g, maxDraws)
}

// keyFromScalar makes a key from a fixed scalar (known-answer tests).
func (g *ecpGroup) keyFromScalar(d []byte) (*ecpKey, error) {
	k, err := g.curve.NewPrivateKey(d)
	if err != nil {
		return nil, err
	}
	return g.key(k), nil
}

func (g *ecpGroup) key(k *ecdh.PrivateKey) *ecpKey {
	return &ecpKey{grp: g, k: k, public: k.PublicKey().Bytes()[1:]} // drop SEC1's 0x04
}

type ecpKey struct {
	grp    *ecpGroup
	k      *ecdh.PrivateKey
	public []byte
}

func (k *ecpKey) Group() Group   { return k.grp }
func (k *ecpKey) Public() []byte { return k.public }

// SharedSecret returns the x coordinate of peer^d, flen bytes (RFC 5903 §7).
// crypto/ecdh checks that the peer point is on the curve and not the point
// at infinity (RFC 5903 §5 / SP 800-56A public key validation).
func (k *ecpKey) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != k.grp.PublicLen() {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPublicValue, len(peer), k.grp.PublicLen())
	}
	sec1 := make([]byte, 1+len(peer))
	sec1[0] = 4 // uncompressed point
	copy(sec1[1:], peer)
	pub, err := k.grp.curve.NewPublicKey(sec1)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicValue, err)
	}
	z, err := k.k.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPublicValue, err)
	}
	return z, nil
}
