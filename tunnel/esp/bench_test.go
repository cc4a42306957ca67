package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/crypto/aescbc"
)

// 1400-byte payloads: an L2TP data packet carrying a near-MTU PPP frame.
const benchPayload = 1400

var benchSuites = []Algorithm{
	{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA1},
	{Enc: EncAESCBC, EncKeyBits: 256, Auth: AuthHMACSHA1},
	{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACSHA256},
	{Enc: EncAESCBC, EncKeyBits: 256, Auth: AuthHMACSHA512},
	{Enc: Enc3DES, EncKeyBits: 192, Auth: AuthHMACSHA1},
	{Enc: EncAESCBC, EncKeyBits: 128, Auth: AuthHMACMD5},
	{Enc: EncAESGCM16, EncKeyBits: 128},
	{Enc: EncAESGCM16, EncKeyBits: 256},
	{Enc: EncAESGCM12, EncKeyBits: 128},
	{Enc: EncAESGCM8, EncKeyBits: 128},
}

func BenchmarkSeal(b *testing.B) {
	for _, alg := range benchSuites {
		b.Run(alg.String(), func(b *testing.B) {
			o, _ := newPair(b, alg)
			hr := o.Headroom()
			buf := make([]byte, hr+benchPayload, hr+benchPayload+o.Tailroom())
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.Seal(buf[:hr+benchPayload], hr, 17); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSealTo seals batches of 8 packets with SealTo and Finish, as
// tunnel/datapath does (AES-CBC four packets at a time); per packet, so it
// compares with BenchmarkSeal.
func BenchmarkSealTo(b *testing.B) {
	for _, alg := range benchSuites[:2] {
		b.Run(alg.String(), func(b *testing.B) {
			o, _ := newPair(b, alg)
			hr := o.Headroom()
			bufs := make([][]byte, 8)
			for i := range bufs {
				bufs[i] = make([]byte, hr+benchPayload, hr+benchPayload+o.Tailroom())
			}
			var batch Batch
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := o.SealTo(&batch, bufs[i][:hr+benchPayload], hr, 17); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(bufs) {
					i = 0
					if err := batch.Finish(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := batch.Finish(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkOpen opens pre-sealed packets; each iteration restores one
// packet (a 1.5 KB copy, also counted) because Open decrypts in place
// and refuses replays.
func BenchmarkOpen(b *testing.B) {
	for _, alg := range benchSuites {
		b.Run(alg.String(), func(b *testing.B) {
			o, in := newPair(b, alg)
			const ring = 1024
			sealed := make([][]byte, ring)
			for i := range sealed {
				sealed[i] = sealCopy(b, o, make([]byte, benchPayload), 17)
			}
			work := make([]byte, len(sealed[0]))
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == ring { // re-seal with fresh sequence numbers
					b.StopTimer()
					for j := range sealed {
						sealed[j] = sealCopy(b, o, make([]byte, benchPayload), 17)
					}
					i = 0
					b.StartTimer()
				}
				copy(work, sealed[i])
				i++
				if _, _, err := in.Open(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawCipherHMAC is the floor: the bare primitives over the same
// number of bytes Seal processes for a 1400-byte payload (1424 bytes of
// CBC / 1404 bytes of GCM plaintext, 8+16+1424 bytes of HMAC input), with
// no ESP framing, padding, pooling or sequence handling. CBC rows: with
// crypto/cipher (one AES call per block), and with crypto/aescbc, what Seal
// and Open use, each direction.
func BenchmarkRawCipherHMAC(b *testing.B) {
	key := make([]byte, 16)
	iv := make([]byte, 16)
	c, _ := aescbc.New(key)
	blk, _ := aes.NewCipher(key)
	cbc := cipher.NewCBCEncrypter(blk, iv)
	for _, row := range []struct {
		name  string
		crypt func(body []byte)
	}{
		{"aescbc-encrypt", func(body []byte) { c.Encrypt(body, body, iv) }},
		{"aescbc-decrypt", func(body []byte) { c.Decrypt(body, body, iv) }},
		{"crypto-cipher-encrypt", func(body []byte) { cbc.CryptBlocks(body, body) }},
	} {
		b.Run("AES-CBC-128+HMAC-SHA1/"+row.name, func(b *testing.B) {
			mac := hmac.New(sha1.New, make([]byte, 20))
			pkt := make([]byte, 24+1424)
			var sum [20]byte
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			for b.Loop() {
				row.crypt(pkt[24:])
				mac.Reset()
				mac.Write(pkt)
				mac.Sum(sum[:0])
			}
		})
	}
	b.Run("AES-GCM-128", func(b *testing.B) {
		blk, _ := aes.NewCipher(key)
		g, _ := cipher.NewGCM(blk)
		nonce := make([]byte, 12)
		buf := make([]byte, 1404, 1404+16)
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		for b.Loop() {
			g.Seal(buf[:0], nonce, buf[:1404], nonce[:8])
		}
	})
}

// IV generation alternatives for CBC (see Outbound.ivCipher).
func BenchmarkIV(b *testing.B) {
	var iv [16]byte
	b.Run("AESCounter", func(b *testing.B) {
		blk, _ := aes.NewCipher(make([]byte, 32))
		b.ReportAllocs()
		n := uint64(0)
		for b.Loop() {
			n++
			iv[15] = byte(n)
			blk.Encrypt(iv[:], iv[:])
		}
	})
	b.Run("CryptoRand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rand.Read(iv[:])
		}
	})
}
