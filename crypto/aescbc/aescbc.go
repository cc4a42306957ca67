// Package aescbc implements AES (FIPS-197) in CBC mode (NIST SP 800-38A
// §6.2), the cipher of ESP's AES-CBC suites (RFC 3602), with AES-NI on
// amd64.
//
// The standard library's CBC mode on amd64 runs one block per call into the
// AES assembly: decryption waits for each block's full latency although CBC
// decryption has no chain between blocks (P[i] = D(C[i]) ^ C[i-1]), and
// encryption reloads the round keys for every block. Here decryption runs
// eight blocks through the AES unit at once, and encryption keeps the round
// keys in registers for the whole message; both are one call per packet.
// Elsewhere, or with the purego build tag, the generic code below runs
// crypto/aes one block at a time.
package aescbc

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"strconv"
	"unsafe"
)

// BlockSize is the AES block size in bytes.
const BlockSize = aes.BlockSize

// ErrLength reports a message that is not a whole number of blocks, a dst
// shorter than src or an IV that is not one block long.
var ErrLength = errors.New("aescbc: message is not whole blocks, or dst or IV too short")

// ErrOverlap reports dst and src that overlap without being the same bytes.
var ErrOverlap = errors.New("aescbc: dst and src overlap inexactly")

// KeySizeError is the error for a key that is not 16, 24 or 32 bytes long.
type KeySizeError int

func (k KeySizeError) Error() string {
	return "aescbc: invalid key size " + strconv.Itoa(int(k))
}

// Cipher is AES-CBC under one key. It holds only the key schedules, which
// it never changes, so one Cipher is safe for concurrent use.
type Cipher struct {
	rounds int // Nr: 10, 12 or 14 (FIPS-197 §5, Figure 4)
	// enc are the round keys of the cipher (FIPS-197 §5.2), dec those of
	// the equivalent inverse cipher (§5.3.5), in the order AESDEC uses
	// them; each round key's bytes in FIPS-197's column order, which is
	// the byte order of an XMM register loaded from memory.
	enc, dec [BlockSize * (14 + 1)]byte
	block    cipher.Block // the generic path
}

// New returns AES-CBC under key, which must be 16, 24 or 32 bytes long
// (AES-128, -192 or -256).
func New(key []byte) (*Cipher, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, KeySizeError(len(key))
	}
	c := &Cipher{rounds: len(key)/4 + 6}
	expandKey(key, c.enc[:BlockSize*(c.rounds+1)], c.dec[:BlockSize*(c.rounds+1)])
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	c.block = b
	return c, nil
}

// Encrypt puts the CBC encryption of src under iv into dst (NIST SP 800-38A
// §6.2: C[i] = E(P[i] ^ C[i-1]), C[-1] = IV). src must be whole blocks, dst
// at least as long, and dst and src either the same bytes (in place) or
// apart.
func (c *Cipher) Encrypt(dst, src, iv []byte) error {
	if err := check(dst, src, iv); err != nil {
		return err
	}
	c.encrypt(dst, src, iv)
	return nil
}

// encrypt is Encrypt on arguments already checked.
func (c *Cipher) encrypt(dst, src, iv []byte) {
	if len(src) == 0 {
		return
	}
	if useAsm {
		encryptCBC(c.rounds, &c.enc[0], (*[BlockSize]byte)(iv), &dst[0], &src[0], len(src))
		return
	}
	var chain [BlockSize]byte
	copy(chain[:], iv)
	for i := 0; i < len(src); i += BlockSize {
		for j := range chain {
			chain[j] ^= src[i+j]
		}
		c.block.Encrypt(chain[:], chain[:])
		copy(dst[i:], chain[:])
	}
}

// EncryptBatch encrypts each msgs[i] in place under ivs[i], like Encrypt
// for each in turn, with four messages at a time through the AES unit:
// each message is a chain, but messages are independent. The messages must
// not overlap each other. On an error nothing is encrypted.
func (c *Cipher) EncryptBatch(msgs, ivs [][]byte) error {
	if len(ivs) != len(msgs) {
		return ErrLength
	}
	for i, m := range msgs {
		if err := check(m, m, ivs[i]); err != nil {
			return err
		}
	}
	for useAsm && len(msgs) >= 4 {
		// The four lanes run for the shortest message; each lane's rest
		// goes on from its last ciphertext block.
		n := min(len(msgs[0]), len(msgs[1]), len(msgs[2]), len(msgs[3]))
		if n > 0 {
			ivp := [4]*byte{&ivs[0][0], &ivs[1][0], &ivs[2][0], &ivs[3][0]}
			bufp := [4]*byte{&msgs[0][0], &msgs[1][0], &msgs[2][0], &msgs[3][0]}
			encryptCBC4(c.rounds, &c.enc[0], &ivp, &bufp, n)
		}
		for i, m := range msgs[:4] {
			iv := ivs[i]
			if n > 0 {
				iv = m[n-BlockSize : n]
			}
			c.encrypt(m[n:], m[n:], iv)
		}
		msgs, ivs = msgs[4:], ivs[4:]
	}
	for i, m := range msgs {
		c.encrypt(m, m, ivs[i])
	}
	return nil
}

// Decrypt puts the CBC decryption of src under iv into dst (NIST SP 800-38A
// §6.2: P[i] = D(C[i]) ^ C[i-1]), with the same rules as Encrypt.
func (c *Cipher) Decrypt(dst, src, iv []byte) error {
	if err := check(dst, src, iv); err != nil || len(src) == 0 {
		return err
	}
	if useAsm {
		decryptCBC(c.rounds, &c.dec[0], (*[BlockSize]byte)(iv), &dst[0], &src[0], len(src))
		return nil
	}
	var prev, ct, pt [BlockSize]byte
	copy(prev[:], iv)
	for i := 0; i < len(src); i += BlockSize {
		copy(ct[:], src[i:]) // before dst[i:] overwrites it in place
		c.block.Decrypt(pt[:], ct[:])
		for j := range pt {
			dst[i+j] = pt[j] ^ prev[j]
		}
		prev = ct
	}
	return nil
}

func check(dst, src, iv []byte) error {
	if len(src)%BlockSize != 0 || len(dst) < len(src) || len(iv) != BlockSize {
		return ErrLength
	}
	if inexactOverlap(dst[:len(src)], src) {
		return ErrOverlap
	}
	return nil
}

// inexactOverlap reports whether x and y share memory at different offsets:
// in place is fine (every block is read before its own position is
// written), but dst one block behind src would read blocks already
// overwritten.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xp, yp := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	if xp == yp {
		return false
	}
	return xp < yp+uintptr(len(y)) && yp < xp+uintptr(len(x))
}
