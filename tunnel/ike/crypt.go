package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"fmt"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
)

// Phase-1 encryption algorithm attribute values (RFC 2409 Appendix A, class 1).
const (
	EncDES    uint16 = 1
	Enc3DES   uint16 = 5
	EncAESCBC uint16 = 7
)

// p1KeyLen returns the phase-1 cipher key length in bytes and the block size.
func p1KeyLen(enc uint16, keyBits int) (keyLen, blockSize int, err error) {
	switch enc {
	case EncDES:
		return 8, des.BlockSize, nil
	case Enc3DES:
		return 24, des.BlockSize, nil
	case EncAESCBC:
		if keyBits != 128 && keyBits != 192 && keyBits != 256 {
			return 0, 0, fmt.Errorf("ike: AES key length %d", keyBits)
		}
		return keyBits / 8, aes.BlockSize, nil
	}
	return 0, 0, fmt.Errorf("ike: unsupported phase-1 cipher %d", enc)
}

func newP1Block(enc uint16, key []byte) (cipher.Block, error) {
	switch enc {
	case EncDES:
		return des.NewCipher(key)
	case Enc3DES:
		return des.NewTripleDESCipher(key)
	case EncAESCBC:
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("ike: unsupported phase-1 cipher %d", enc)
}

// ivManager keeps the CBC IV chains of one ISAKMP SA, following the design
// of strongSwan's iv_manager.c and RFC 2409 Appendix B:
//
//   - M-ID 0 (Main Mode) chains across messages in both directions; the IV
//     after MM6 is the "last phase-1 block" and stays frozen afterwards.
//   - every other M-ID (Quick Mode, Informational) starts from
//     hash(last phase-1 block | M-ID) and then chains within that exchange.
//   - a received message's last cipher block becomes the next IV only after
//     the message decrypted and its HASH verified (commit); a sent message's
//     last block becomes the next IV at once. Retransmissions reuse the
//     stored bytes, so they never touch the chain.
type ivManager struct {
	suite     ikev1.Suite
	block     cipher.Block
	bs        int
	phase1    []byte // current M-ID 0 IV; frozen after Main Mode
	p1Frozen  bool
	chains    []ivChain // small, most recent last
	maxChains int
}

type ivChain struct {
	mid uint32
	iv  []byte
}

func newIVManager(s ikev1.Suite, b cipher.Block, initial []byte) *ivManager {
	return &ivManager{suite: s, block: b, bs: b.BlockSize(), phase1: initial, maxChains: 16}
}

// freeze ends phase 1: later M-ID 0 traffic no longer moves the phase-1 IV.
func (m *ivManager) freeze() { m.p1Frozen = true }

func (m *ivManager) get(mid uint32) []byte {
	if mid == 0 {
		return m.phase1
	}
	for _, c := range m.chains {
		if c.mid == mid {
			return c.iv
		}
	}
	return m.suite.Phase2IV(m.phase1, mid, m.bs)
}

func (m *ivManager) set(mid uint32, iv []byte) {
	iv = append([]byte(nil), iv...)
	if mid == 0 {
		if !m.p1Frozen {
			m.phase1 = iv
		}
		return
	}
	for i := range m.chains {
		if m.chains[i].mid == mid {
			m.chains[i].iv = iv
			return
		}
	}
	if len(m.chains) >= m.maxChains {
		m.chains = append(m.chains[:0], m.chains[1:]...)
	}
	m.chains = append(m.chains, ivChain{mid: mid, iv: iv})
}

// encrypt pads plaintext with zero bytes to a block multiple (RFC 2409 §5.3;
// receivers delimit payloads by their lengths), encrypts it with the
// chain's IV and advances the chain.
func (m *ivManager) encrypt(mid uint32, plaintext []byte) []byte {
	n := len(plaintext)
	if r := n % m.bs; r != 0 {
		n += m.bs - r
	}
	out := make([]byte, n)
	copy(out, plaintext)
	cipher.NewCBCEncrypter(m.block, m.get(mid)).CryptBlocks(out, out)
	m.set(mid, out[n-m.bs:])
	return out
}

// decrypt decrypts ciphertext with the chain's IV without advancing it; the
// caller commits the returned next IV once the message is authenticated.
func (m *ivManager) decrypt(mid uint32, ciphertext []byte) (plain, nextIV []byte, err error) {
	if len(ciphertext) == 0 || len(ciphertext)%m.bs != 0 {
		return nil, nil, fmt.Errorf("%w: ciphertext length %d not a multiple of %d", ErrMalformed, len(ciphertext), m.bs)
	}
	plain = make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(m.block, m.get(mid)).CryptBlocks(plain, ciphertext)
	return plain, append([]byte(nil), ciphertext[len(ciphertext)-m.bs:]...), nil
}
