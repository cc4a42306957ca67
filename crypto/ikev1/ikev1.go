// Package ikev1 implements the IKEv1 key derivations of RFC 2409 for
// pre-shared-key Main Mode and Quick Mode: SKEYID and its derivatives (§5),
// the encryption key expansion and IVs (Appendix B), the authentication
// hashes HASH_I/HASH_R (§5), the Quick Mode hashes HASH(1..3) and KEYMAT
// (§5.5), and the NAT-D hash of RFC 3947 §3.2.
//
// All functions are pure: byte slices in, fresh byte slices out.
package ikev1

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
)

// HashAlg is the IKEv1 phase-1 "Hash Algorithm" attribute value (RFC 2409
// Appendix A, class 2).
type HashAlg uint16

const (
	HashMD5    HashAlg = 1
	HashSHA1   HashAlg = 2
	HashSHA256 HashAlg = 4
	HashSHA384 HashAlg = 5
	HashSHA512 HashAlg = 6
)

// ErrUnsupportedHash is returned for hash attribute values not implemented here.
var ErrUnsupportedHash = errors.New("ikev1: unsupported hash algorithm")

// String names the hash as IKE logs do.
func (h HashAlg) String() string {
	switch h {
	case HashMD5:
		return "MD5"
	case HashSHA1:
		return "SHA1"
	case HashSHA256:
		return "SHA2-256"
	case HashSHA384:
		return "SHA2-384"
	case HashSHA512:
		return "SHA2-512"
	}
	return fmt.Sprintf("hash#%d", uint16(h))
}

// Suite bundles the negotiated hash. Without a PRF attribute (which nobody
// sends) the IKEv1 prf is HMAC with the negotiated hash (RFC 2409 §4,
// strongSwan keymat_v1.c auth_to_prf).
type Suite struct {
	Alg HashAlg
	New func() hash.Hash
}

// NewSuite returns the suite for a phase-1 hash attribute value.
func NewSuite(alg HashAlg) (Suite, error) {
	var f func() hash.Hash
	switch alg {
	case HashMD5:
		f = md5.New
	case HashSHA1:
		f = sha1.New
	case HashSHA256:
		f = sha256.New
	case HashSHA384:
		f = sha512.New384
	case HashSHA512:
		f = sha512.New
	default:
		return Suite{}, fmt.Errorf("%w %d", ErrUnsupportedHash, alg)
	}
	return Suite{Alg: alg, New: f}, nil
}

// Size is the hash (and prf) output length.
func (s Suite) Size() int { return s.New().Size() }

// PRF computes HMAC(key, data[0] | data[1] | ...).
func (s Suite) PRF(key []byte, data ...[]byte) []byte {
	m := hmac.New(s.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// Hash computes the plain hash of the concatenated data.
func (s Suite) Hash(data ...[]byte) []byte {
	h := s.New()
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// SKEYIDPSK computes SKEYID = prf(pre-shared-key, Ni_b | Nr_b) for
// pre-shared-key authentication (RFC 2409 §5). Ni_b and Nr_b are the Nonce
// payload bodies (no generic header).
func (s Suite) SKEYIDPSK(psk, ni, nr []byte) []byte {
	return s.PRF(psk, ni, nr)
}

// KeySet is the phase-1 keying material.
type KeySet struct {
	SKEYID, D, A, E []byte
}

// DeriveKeys computes SKEYID_d, SKEYID_a, SKEYID_e (RFC 2409 §5):
//
//	SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
//	SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
//	SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
//
// gxy must be the shared secret padded to the modulus length.
func (s Suite) DeriveKeys(skeyid, gxy, ckyI, ckyR []byte) KeySet {
	d := s.PRF(skeyid, gxy, ckyI, ckyR, []byte{0})
	a := s.PRF(skeyid, d, gxy, ckyI, ckyR, []byte{1})
	e := s.PRF(skeyid, a, gxy, ckyI, ckyR, []byte{2})
	return KeySet{SKEYID: skeyid, D: d, A: a, E: e}
}

// EncryptionKey derives the phase-1 cipher key Ka of keyLen bytes from
// SKEYID_e (RFC 2409 Appendix B). If SKEYID_e is long enough it is truncated;
// otherwise Ka = K1 | K2 | ..., with K1 = prf(SKEYID_e, 0x00) and
// Kn = prf(SKEYID_e, K(n-1)). SKEYID_e itself is not part of the expansion.
func (s Suite) EncryptionKey(skeyidE []byte, keyLen int) []byte {
	if len(skeyidE) >= keyLen {
		return append([]byte(nil), skeyidE[:keyLen]...)
	}
	out := make([]byte, 0, keyLen+s.Size())
	k := s.PRF(skeyidE, []byte{0})
	out = append(out, k...)
	for len(out) < keyLen {
		k = s.PRF(skeyidE, k)
		out = append(out, k...)
	}
	return out[:keyLen]
}

// Phase1IV is the IV of the first encrypted phase-1 message:
// hash(g^xi | g^xr) truncated to the cipher block size (RFC 2409 Appendix B).
// Both KE values as sent (padded).
func (s Suite) Phase1IV(gxi, gxr []byte, blockSize int) []byte {
	return s.Hash(gxi, gxr)[:blockSize]
}

// Phase2IV is the first IV of a Quick Mode or Informational exchange:
// hash(last CBC block of the last phase-1 message | M-ID) truncated to the
// block size (RFC 2409 Appendix B). lastPhase1Block stays frozen after
// Main Mode; it is not advanced by later exchanges.
func (s Suite) Phase2IV(lastPhase1Block []byte, messageID uint32, blockSize int) []byte {
	var mid [4]byte
	binary.BigEndian.PutUint32(mid[:], messageID)
	return s.Hash(lastPhase1Block, mid[:])[:blockSize]
}

// HashI computes HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b |
// IDii_b) (RFC 2409 §5). saiB is the body of the initiator's MM1 SA payload
// exactly as sent; idiiB the initiator's ID payload body.
func (s Suite) HashI(skeyid, gxi, gxr, ckyI, ckyR, saiB, idiiB []byte) []byte {
	return s.PRF(skeyid, gxi, gxr, ckyI, ckyR, saiB, idiiB)
}

// HashR computes HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b |
// IDir_b) (RFC 2409 §5). Note SAi_b is the initiator's SA here too.
func (s Suite) HashR(skeyid, gxi, gxr, ckyI, ckyR, saiB, idirB []byte) []byte {
	return s.PRF(skeyid, gxr, gxi, ckyR, ckyI, saiB, idirB)
}

func midBytes(m uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], m)
	return b[:]
}

// QMHash1 computes HASH(1) = prf(SKEYID_a, M-ID | rest), where rest is every
// payload after the HASH payload, with generic headers, without padding
// (RFC 2409 §5.5). Informational exchanges use the same formula (§5.7).
func (s Suite) QMHash1(skeyidA []byte, messageID uint32, rest []byte) []byte {
	return s.PRF(skeyidA, midBytes(messageID), rest)
}

// QMHash2 computes HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest) (RFC 2409 §5.5);
// Ni_b is the Quick Mode initiator nonce body.
func (s Suite) QMHash2(skeyidA []byte, messageID uint32, niB, rest []byte) []byte {
	return s.PRF(skeyidA, midBytes(messageID), niB, rest)
}

// QMHash3 computes HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) (RFC 2409 §5.5).
func (s Suite) QMHash3(skeyidA []byte, messageID uint32, niB, nrB []byte) []byte {
	return s.PRF(skeyidA, []byte{0}, midBytes(messageID), niB, nrB)
}

// Keymat derives length bytes of KEYMAT for one SA (RFC 2409 §5.5):
//
//	K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//	Kn = prf(SKEYID_d, K(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//
// spi is the 4-byte SPI of the SA being keyed, i.e. the receiver's SPI
// (outbound keys use the peer's SPI). pfsGxy is nil without PFS. Ni_b/Nr_b
// are the Quick Mode nonces. Split the result encryption key first, then
// integrity key.
func (s Suite) Keymat(skeyidD, pfsGxy []byte, protocol uint8, spi uint32, niB, nrB []byte, length int) []byte {
	seed := make([]byte, 0, len(pfsGxy)+5+len(niB)+len(nrB))
	seed = append(seed, pfsGxy...)
	seed = append(seed, protocol)
	seed = binary.BigEndian.AppendUint32(seed, spi)
	seed = append(seed, niB...)
	seed = append(seed, nrB...)
	out := make([]byte, 0, length+s.Size())
	k := s.PRF(skeyidD, seed)
	out = append(out, k...)
	for len(out) < length {
		k = s.PRF(skeyidD, k, seed)
		out = append(out, k...)
	}
	return out[:length]
}

// NATD computes the NAT-D payload body HASH(CKY-I | CKY-R | IP | Port)
// (RFC 3947 §3.2) with the negotiated hash; IPv4 is 4 bytes, IPv6 16,
// the port 2 bytes in network order.
func (s Suite) NATD(ckyI, ckyR []byte, ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap().AsSlice()
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], ap.Port())
	return s.Hash(ckyI, ckyR, ip, port[:])
}
