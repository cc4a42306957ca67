// Package modp implements finite-field Diffie-Hellman over the MODP groups
// used by IKEv1: group 2 (1024-bit, RFC 2409 §6.2), group 5 (1536-bit,
// RFC 3526 §2), group 14 (2048-bit, RFC 3526 §3), group 15 (3072-bit,
// RFC 3526 §4) and group 16 (4096-bit, RFC 3526 §5), all with generator 2.
//
// Public values and shared secrets are always encoded as big-endian integers
// left-padded with zeros to the modulus length: the KE payload carries g^x
// that way, and RFC 2409 §5 key derivation hashes g^xy in that form
// (strongSwan exports p_len bytes). big.Int.Bytes would strip leading zeros
// and break about one handshake in 256.
package modp

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// ErrUnknownGroup is returned for a group number this package does not implement.
var ErrUnknownGroup = errors.New("modp: unsupported group")

// ErrInvalidPublicValue is returned when a peer's public value is outside [2, p-2].
var ErrInvalidPublicValue = errors.New("modp: invalid peer public value")

// Group is one MODP group.
type Group struct {
	ID   uint16 // IKE group number (RFC 2409 Appendix A / IANA)
	Bits int
	P    *big.Int
	G    *big.Int
}

// Len is the modulus length in bytes (the encoded length of every public
// value and shared secret).
func (g *Group) Len() int { return (g.Bits + 7) / 8 }

// String names the group as logs print it, e.g. "MODP2048".
func (g *Group) String() string { return fmt.Sprintf("MODP%d", g.Bits) }

const (
	prime1024 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
	prime1536 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
	prime2048 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
	prime3072 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
	prime4096 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA993B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"
)

func mustGroup(id uint16, bits int, hex string) *Group {
	p, ok := new(big.Int).SetString(hex, 16)
	if !ok || p.BitLen() != bits {
		// Constant tables; a mistake here is a programming error caught by tests.
		return nil
	}
	return &Group{ID: id, Bits: bits, P: p, G: big.NewInt(2)}
}

var groups = map[uint16]*Group{
	2:  mustGroup(2, 1024, prime1024),
	5:  mustGroup(5, 1536, prime1536),
	14: mustGroup(14, 2048, prime2048),
	15: mustGroup(15, 3072, prime3072),
	16: mustGroup(16, 4096, prime4096),
}

// ByID returns the group with IKE number id (2, 5, 14, 15 or 16).
func ByID(id uint16) (*Group, error) {
	g := groups[id]
	if g == nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownGroup, id)
	}
	return g, nil
}

// PrivateKey is one side's ephemeral DH key.
type PrivateKey struct {
	Group  *Group
	x      *big.Int
	public []byte
}

// GenerateKey draws a private exponent from rand and computes g^x mod p.
// The exponent has as many bits as the modulus minus one, well above the
// 2x-security-level minimum (RFC 3526 §8).
func (g *Group) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	buf := make([]byte, g.Len())
	if _, err := io.ReadFull(rand, buf); err != nil {
		return nil, fmt.Errorf("modp: reading random exponent: %w", err)
	}
	buf[0] &= 0x7f // keep x < p
	x := new(big.Int).SetBytes(buf)
	if x.Cmp(big.NewInt(2)) < 0 {
		x.SetInt64(2)
	}
	return g.keyFromExponent(x), nil
}

func (g *Group) keyFromExponent(x *big.Int) *PrivateKey {
	y := new(big.Int).Exp(g.G, x, g.P)
	return &PrivateKey{Group: g, x: x, public: y.FillBytes(make([]byte, g.Len()))}
}

// Public returns g^x, left-padded to the modulus length. The caller must
// not modify it.
func (k *PrivateKey) Public() []byte { return k.public }

// SharedSecret computes peer^x mod p, left-padded to the modulus length.
// The peer value must be at most the modulus length and lie in [2, p-2]
// (RFC 2631 §2.1.5-style range check; 0, 1 and p-1 are degenerate).
func (k *PrivateKey) SharedSecret(peer []byte) ([]byte, error) {
	g := k.Group
	if len(peer) == 0 || len(peer) > g.Len() {
		return nil, fmt.Errorf("%w: length %d, want %d", ErrInvalidPublicValue, len(peer), g.Len())
	}
	y := new(big.Int).SetBytes(peer)
	pMinus2 := new(big.Int).Sub(g.P, big.NewInt(2))
	if y.Cmp(big.NewInt(2)) < 0 || y.Cmp(pMinus2) > 0 {
		return nil, ErrInvalidPublicValue
	}
	z := new(big.Int).Exp(y, k.x, g.P)
	return z.FillBytes(make([]byte, g.Len())), nil
}
