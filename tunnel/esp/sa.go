package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/l2tpproxy/l2tpproxy/crypto/aescbc"
)

// Sentinel errors. Open and Seal return these values unwrapped, so the
// packet path never allocates for an error (a flood of garbage must not
// create garbage); callers compare with errors.Is or ==.
var (
	// ErrAuth: the ICV (HMAC or GCM tag) did not verify.
	ErrAuth = errors.New("esp: integrity check failed")
	// ErrReplay: the sequence number was already received, is older than
	// the anti-replay window, or is zero (RFC 4303 §3.4.3).
	ErrReplay = errors.New("esp: replayed or too old sequence number")
	// ErrMalformed: wrong SPI, bad length, or a bad trailer (padding, pad
	// length) inside an authentic packet.
	ErrMalformed = errors.New("esp: malformed packet")
	// ErrSeqExhausted: the outbound SA has sent sequence number 2^32-1 and
	// must be rekeyed; ESP without ESN must not wrap (RFC 4303 §3.3.3).
	ErrSeqExhausted = errors.New("esp: sequence number space exhausted, rekey")
	// ErrByteLimit: sealing the packet would take the outbound SA past the
	// byte limit of its lifetime (Outbound.SetByteLimit); it must be
	// rekeyed. Nothing was written and no sequence number used.
	ErrByteLimit = errors.New("esp: SA byte lifetime reached, rekey")
	// ErrBufferSpace: Seal was called without the promised headroom or tailroom.
	ErrBufferSpace = errors.New("esp: not enough headroom or tailroom in buffer")
)

// Packet path overview (the style of wireguard-go's send.go/receive.go):
//
//   - Seal writes the ESP header into headroom the caller leaves in front of
//     the payload and the trailer/ICV into tailroom behind it, then encrypts
//     and authenticates in place. Nothing is copied, nothing allocated.
//   - Open verifies and decrypts in place and returns a subslice.
//   - Shared state: Outbound has one atomic counter (sequence numbers, which
//     also feed the IV generators); Inbound has one mutex around the replay
//     bitmap. Cipher and AEAD objects are read-only after setup; the
//     per-packet mutable bits (CBC IV register, HMAC state, nonce) live in
//     a work value from a sync.Pool.
//   - Errors on the packet path are bare sentinels (no fmt.Errorf), so a
//     flood of bad packets costs no allocations either.

const (
	hdrLen    = 8 // SPI(4) | Seq(4)
	saltLen   = 4 // RFC 4106 §4
	gcmIVLen  = 8 // RFC 4106 §3.1 explicit IV
	maxSumLen = 64
)

// suite is the per-SA, read-only-after-construction crypto state shared by
// Outbound and Inbound. Everything here is safe for concurrent use:
// cipher.Block and cipher.AEAD are stateless after key setup. Per-packet
// mutable state (CBC chaining IV, HMAC running state) lives in a work value
// taken from pool for the duration of one call.
type suite struct {
	spi    uint32
	alg    Algorithm
	aead   bool
	ivLen  int // bytes of IV in the packet (16 AES-CBC, 8 3DES, 8 GCM)
	align  int // the padded plaintext (payload|pad|padlen|nh) is a multiple of this
	icvLen int

	block  cipher.Block   // the data cipher (3DES-CBC and the GCM-8 software path)
	aesCBC *aescbc.Cipher // AES-CBC: one call per packet, AES-NI pipelined (crypto/aescbc)

	// AES-GCM. gcm has a tag of icvLen bytes, except for ICV 8 (below the
	// 12-byte minimum of crypto/cipher): then gcm has a 16-byte tag, Seal
	// truncates it (a GCM tag of t bytes is the first t bytes of the full
	// tag, NIST SP 800-38D §7.1) and Open uses the software ghash path.
	gcm  cipher.AEAD
	salt [saltLen]byte
	gh   *ghashKey // only for ICV 8

	hashNew func() hash.Hash
	authKey []byte

	pool sync.Pool // *work
}

// work is per-call scratch, recycled through suite.pool so that steady-state
// Seal/Open allocate nothing. It is owned by exactly one goroutine between
// pool.Get and pool.Put.
type work struct {
	cbc   cipher.BlockMode
	setIV interface{ SetIV([]byte) }
	mac   hash.Hash // hmac.New: Reset restores the precomputed keyed state
	sum   [maxSumLen]byte
	nonce [saltLen + gcmIVLen]byte
	iv    [aes.BlockSize]byte
	icv   [16]byte
}

func newSuite(k Keys, encrypt bool) (*suite, error) {
	if k.SPI == 0 {
		// 0 is never on the wire and means "non-ESP marker" inside UDP 4500
		// (RFC 3948 §2.2); 1..255 are reserved (RFC 4303 §2.1).
		return nil, fmt.Errorf("esp: SPI %#x is not usable", k.SPI)
	}
	encLen, authLen, err := k.Alg.KeymatLen()
	if err != nil {
		return nil, err
	}
	if len(k.EncKey) != encLen {
		return nil, fmt.Errorf("esp: %v needs a %d-byte encryption key, got %d", k.Alg, encLen, len(k.EncKey))
	}
	if len(k.AuthKey) != authLen {
		return nil, fmt.Errorf("esp: %v needs a %d-byte integrity key, got %d", k.Alg, authLen, len(k.AuthKey))
	}
	s := &suite{spi: k.SPI, alg: k.Alg}
	switch k.Alg.Enc {
	case Enc3DES:
		if s.block, err = des.NewTripleDESCipher(k.EncKey); err != nil {
			return nil, fmt.Errorf("esp: 3DES key: %w", err)
		}
		s.ivLen, s.align = des.BlockSize, des.BlockSize
	case EncAESCBC:
		if s.aesCBC, err = aescbc.New(k.EncKey); err != nil {
			return nil, fmt.Errorf("esp: AES key: %w", err)
		}
		s.ivLen, s.align = aes.BlockSize, aes.BlockSize
	case EncAESGCM8, EncAESGCM12, EncAESGCM16:
		s.aead = true
		s.ivLen, s.align = gcmIVLen, 4 // RFC 4106 §3.2: no block alignment, 4-byte trailer alignment only
		switch k.Alg.Enc {
		case EncAESGCM8:
			s.icvLen = 8
		case EncAESGCM12:
			s.icvLen = 12
		default:
			s.icvLen = 16
		}
		key, salt := k.EncKey[:len(k.EncKey)-saltLen], k.EncKey[len(k.EncKey)-saltLen:]
		copy(s.salt[:], salt) // RFC 4106 §8.1: salt = last 4 bytes of the KEYMAT part
		if s.block, err = aes.NewCipher(key); err != nil {
			return nil, fmt.Errorf("esp: AES-GCM key: %w", err)
		}
		tag := s.icvLen
		if tag < 12 {
			tag = 16
			s.gh = newGHASHKey(s.block)
		}
		if s.gcm, err = cipher.NewGCMWithTagSize(s.block, tag); err != nil {
			return nil, fmt.Errorf("esp: AES-GCM: %w", err)
		}
	}
	if !s.aead {
		switch k.Alg.Auth {
		case AuthHMACMD5: // RFC 2403
			s.hashNew, s.icvLen = md5.New, 12
		case AuthHMACSHA1: // RFC 2404
			s.hashNew, s.icvLen = sha1.New, 12
		case AuthHMACSHA256: // RFC 4868 §2.1: truncated to half the output
			s.hashNew, s.icvLen = sha256.New, 16
		case AuthHMACSHA384:
			s.hashNew, s.icvLen = sha512.New384, 24
		case AuthHMACSHA512:
			s.hashNew, s.icvLen = sha512.New, 32
		}
		s.authKey = append([]byte(nil), k.AuthKey...)
	}
	s.pool.New = func() any { return s.newWork(encrypt) }
	return s, nil
}

func (s *suite) newWork(encrypt bool) *work {
	w := new(work)
	if !s.aead {
		w.mac = hmac.New(s.hashNew, s.authKey)
	}
	if s.block != nil && !s.aead {
		iv := make([]byte, s.block.BlockSize())
		if encrypt {
			w.cbc = cipher.NewCBCEncrypter(s.block, iv)
		} else {
			w.cbc = cipher.NewCBCDecrypter(s.block, iv)
		}
		// Both the generic and the AES CBC modes of crypto/cipher have
		// SetIV; checked in newSuite by creating one work eagerly.
		w.setIV, _ = w.cbc.(interface{ SetIV([]byte) })
	}
	copy(w.nonce[:saltLen], s.salt[:])
	return w
}

// check creates one work value eagerly so that a crypto/cipher without
// SetIV fails at SA setup, not on the packet path.
func (s *suite) check(encrypt bool) error {
	w := s.newWork(encrypt)
	if s.block != nil && !s.aead && w.setIV == nil {
		return fmt.Errorf("esp: CBC mode of %v cannot reset its IV", s.alg)
	}
	s.pool.Put(w)
	return nil
}

// cryptCBC encrypts (encrypt, an Outbound's suite) or decrypts body, whole
// blocks, in place under iv: with crypto/aescbc for AES, else with the
// crypto/cipher mode newWork made for the suite's direction.
func (s *suite) cryptCBC(w *work, iv, body []byte, encrypt bool) error {
	switch {
	case s.aesCBC == nil:
		w.setIV.SetIV(iv)
		w.cbc.CryptBlocks(body, body)
		return nil
	case encrypt:
		return s.aesCBC.Encrypt(body, body, iv)
	default:
		return s.aesCBC.Decrypt(body, body, iv)
	}
}

// macSum returns the truncated HMAC of data (RFC 2404 §2, RFC 4868 §2.1:
// the leftmost icvLen bytes), in w's scratch space (valid until w is
// reused). Reset restores the keyed state hmac.New precomputed, so no key
// schedule runs per packet and Sum appends into w.sum: no allocation.
func (s *suite) macSum(w *work, data []byte) []byte {
	w.mac.Reset()
	w.mac.Write(data)
	return w.mac.Sum(w.sum[:0])[:s.icvLen]
}
