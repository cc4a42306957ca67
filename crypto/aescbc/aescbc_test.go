package aescbc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// paths runs f on the assembly (where there is one) and on the generic code.
func paths(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useAsm
	t.Cleanup(func() { useAsm = saved })
	if saved {
		t.Run("asm", f)
	}
	useAsm = false
	t.Run("generic", f)
	useAsm = saved
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type kat struct{ name, key, iv, plaintext, ciphertext string }

func loadKATs(t *testing.T) []kat {
	t.Helper()
	var out []kat
	var sp struct {
		Cases []struct{ Name, Key, IV, Plaintext, Ciphertext string }
	}
	read(t, "aes_cbc_sp800_38a.json", &sp)
	for _, c := range sp.Cases {
		out = append(out, kat{c.Name, c.Key, c.IV, c.Plaintext, c.Ciphertext})
	}
	var rfc struct {
		Raw []struct {
			Case                           int
			Key, IV, Plaintext, Ciphertext string
		} `json:"raw_cbc_cases"`
	}
	read(t, "esp_aes_cbc_rfc3602.json", &rfc)
	for _, c := range rfc.Raw {
		out = append(out, kat{fmt.Sprintf("RFC 3602 case %d", c.Case), c.Key, c.IV, c.Plaintext, c.Ciphertext})
	}
	if len(out) != 7 {
		t.Fatalf("%d known-answer cases, want 3 from SP 800-38A and 4 from RFC 3602", len(out))
	}
	return out
}

func read(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestKnownAnswers: NIST SP 800-38A F.2.1-F.2.6 and RFC 3602 §4 cases 1-4,
// each encrypted and decrypted, apart and in place.
func TestKnownAnswers(t *testing.T) {
	kats := loadKATs(t)
	paths(t, func(t *testing.T) {
		for _, k := range kats {
			c, err := New(unhex(t, k.key))
			if err != nil {
				t.Fatal(err)
			}
			iv, pt, ct := unhex(t, k.iv), unhex(t, k.plaintext), unhex(t, k.ciphertext)
			got := make([]byte, len(pt))
			if err := c.Encrypt(got, pt, iv); err != nil || !bytes.Equal(got, ct) {
				t.Errorf("%s: Encrypt = %x, %v; want %x", k.name, got, err, ct)
			}
			if err := c.Decrypt(got, ct, iv); err != nil || !bytes.Equal(got, pt) {
				t.Errorf("%s: Decrypt = %x, %v; want %x", k.name, got, err, pt)
			}
			buf := bytes.Clone(pt)
			if c.Encrypt(buf, buf, iv); !bytes.Equal(buf, ct) {
				t.Errorf("%s: in-place Encrypt = %x", k.name, buf)
			}
			if c.Decrypt(buf, buf, iv); !bytes.Equal(buf, pt) {
				t.Errorf("%s: in-place Decrypt = %x", k.name, buf)
			}
		}
	})
}

// TestKeyExpansion: the last round key of FIPS-197 Appendix A.1, and the
// equivalent inverse cipher's first and last keys (§5.3.5).
func TestKeyExpansion(t *testing.T) {
	c, err := New(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	if err != nil {
		t.Fatal(err)
	}
	last := unhex(t, "d014f9a8c9ee2589e13f0cc8b6630ca6") // w[40..43]
	if got := c.enc[160:176]; !bytes.Equal(got, last) {
		t.Errorf("round key 10 = %x, want %x", got, last)
	}
	if !bytes.Equal(c.dec[:16], last) || !bytes.Equal(c.dec[160:176], c.enc[:16]) {
		t.Errorf("decryption keys 0 and 10 = %x, %x", c.dec[:16], c.dec[160:176])
	}
	if sbox[0x00] != 0x63 || sbox[0x53] != 0xed || sbox[0xff] != 0x16 { // FIPS-197 §5.1.1, Figure 7
		t.Errorf("S-box: %#x %#x %#x", sbox[0x00], sbox[0x53], sbox[0xff])
	}
}

// TestAgainstStandardLibrary compares every key size and every length from
// 0 to 40 blocks (each branch of the 8-, 4- and 1-block decryption) with
// crypto/cipher, apart and in place, at unaligned offsets.
func TestAgainstStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	paths(t, func(t *testing.T) {
		for _, keyLen := range []int{16, 24, 32} {
			key := randBytes(rng, keyLen)
			c, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := aes.NewCipher(key)
			for blocks := range 41 {
				iv := randBytes(rng, BlockSize)
				off := rng.IntN(16)
				pt := randBytes(rng, off+blocks*BlockSize)[off:]
				want := make([]byte, len(pt))
				cipher.NewCBCEncrypter(ref, iv).CryptBlocks(want, pt)

				got := make([]byte, len(pt))
				if err := c.Encrypt(got, pt, iv); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("AES-%d, %d blocks: Encrypt differs (%v)", keyLen*8, blocks, err)
				}
				back := bytes.Clone(got)
				if err := c.Decrypt(back, back, iv); err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("AES-%d, %d blocks: in-place Decrypt differs (%v)", keyLen*8, blocks, err)
				}
				inPlace := bytes.Clone(pt)
				if c.Encrypt(inPlace, inPlace, iv); !bytes.Equal(inPlace, want) {
					t.Fatalf("AES-%d, %d blocks: in-place Encrypt differs", keyLen*8, blocks)
				}
				clear(back)
				if c.Decrypt(back, want, iv); !bytes.Equal(back, pt) {
					t.Fatalf("AES-%d, %d blocks: Decrypt differs", keyLen*8, blocks)
				}
			}
		}
	})
}

// TestEncryptBatch: EncryptBatch equals Encrypt of each message, for
// batches of 0-9 messages of equal and of different lengths (the four
// lanes run for the shortest), every key size.
func TestEncryptBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	paths(t, func(t *testing.T) {
		for _, keyLen := range []int{16, 24, 32} {
			c, err := New(randBytes(rng, keyLen))
			if err != nil {
				t.Fatal(err)
			}
			for count := range 10 {
				for _, equal := range []bool{true, false} {
					var msgs, ivs, want [][]byte
					for i := range count {
						blocks := 90
						if !equal {
							blocks = rng.IntN(100)
						}
						if i == 2 && !equal {
							blocks = 0 // an empty lane: the others still run
						}
						m := randBytes(rng, blocks*BlockSize)
						iv := randBytes(rng, BlockSize)
						w := make([]byte, len(m))
						if err := c.Encrypt(w, m, iv); err != nil {
							t.Fatal(err)
						}
						msgs, ivs, want = append(msgs, m), append(ivs, iv), append(want, w)
					}
					if err := c.EncryptBatch(msgs, ivs); err != nil {
						t.Fatalf("AES-%d, %d messages: %v", keyLen*8, count, err)
					}
					for i := range msgs {
						if !bytes.Equal(msgs[i], want[i]) {
							t.Fatalf("AES-%d, %d messages (equal lengths %v): message %d of %d bytes differs",
								keyLen*8, count, equal, i, len(msgs[i]))
						}
					}
				}
			}
		}
	})
}

// TestEncryptBatchErrors: a bad message anywhere refuses the whole batch.
func TestEncryptBatchErrors(t *testing.T) {
	c, _ := New(make([]byte, 16))
	msgs := [][]byte{make([]byte, 32), make([]byte, 32), make([]byte, 32), make([]byte, 32), make([]byte, 20)}
	ivs := [][]byte{make([]byte, 16), make([]byte, 16), make([]byte, 16), make([]byte, 16), make([]byte, 16)}
	if err := c.EncryptBatch(msgs, ivs); !errors.Is(err, ErrLength) {
		t.Errorf("a partial block in message 5: %v", err)
	}
	if err := c.EncryptBatch(msgs[:4], ivs[:3]); !errors.Is(err, ErrLength) {
		t.Errorf("fewer IVs than messages: %v", err)
	}
	for _, m := range msgs {
		if !bytes.Equal(m, make([]byte, len(m))) {
			t.Fatal("a refused batch encrypted a message")
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestErrors: bad keys, lengths and overlaps are errors, and nothing is
// written.
func TestErrors(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 33} {
		if _, err := New(make([]byte, n)); !errors.As(err, new(KeySizeError)) {
			t.Errorf("New(%d-byte key) = %v, want KeySizeError", n, err)
		}
	}
	c, err := New(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	iv := make([]byte, 16)
	for _, tc := range []struct {
		name         string
		dst, src, iv []byte
		want         error
	}{
		{"partial block", buf, buf[:17], iv, ErrLength},
		{"short dst", buf[:16], buf[32:64], iv, ErrLength},
		{"short IV", buf, buf, iv[:8], ErrLength},
		{"dst one block behind src", buf[:32], buf[16:48], iv, ErrOverlap},
		{"dst one block ahead of src", buf[16:48], buf[:32], iv, ErrOverlap},
	} {
		for name, f := range map[string]func(dst, src, iv []byte) error{"Encrypt": c.Encrypt, "Decrypt": c.Decrypt} {
			if err := f(tc.dst, tc.src, tc.iv); !errors.Is(err, tc.want) {
				t.Errorf("%s, %s: %v, want %v", name, tc.name, err, tc.want)
			}
		}
	}
	if !bytes.Equal(buf, make([]byte, 64)) {
		t.Error("a refused call wrote to dst")
	}
	if err := c.Encrypt(nil, nil, iv); err != nil {
		t.Errorf("empty message: %v", err)
	}
}

// FuzzCBC compares both directions with crypto/cipher for any key, IV and
// message.
func FuzzCBC(f *testing.F) {
	f.Add(make([]byte, 16), make([]byte, 16), make([]byte, 48))
	f.Add(make([]byte, 32), make([]byte, 16), make([]byte, 1400))
	f.Fuzz(func(t *testing.T, key, iv, msg []byte) {
		c, err := New(key)
		if err != nil {
			return
		}
		if len(iv) < BlockSize {
			return
		}
		iv = iv[:BlockSize]
		msg = msg[:len(msg)/BlockSize*BlockSize]
		ref, _ := aes.NewCipher(key)
		want := make([]byte, len(msg))
		cipher.NewCBCEncrypter(ref, iv).CryptBlocks(want, msg)
		got := bytes.Clone(msg)
		if err := c.Encrypt(got, got, iv); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Encrypt differs (%v)", err)
		}
		cipher.NewCBCDecrypter(ref, iv).CryptBlocks(want, msg)
		got = make([]byte, len(msg))
		if err := c.Decrypt(got, msg, iv); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Decrypt differs (%v)", err)
		}
	})
}

// FuzzEncryptBatch: a batch of messages cut from the input, lengths from
// cuts, equals Encrypt of each.
func FuzzEncryptBatch(f *testing.F) {
	f.Add(make([]byte, 16), []byte{5, 5, 5, 5, 1}, make([]byte, 1024))
	f.Fuzz(func(t *testing.T, key, cuts, data []byte) {
		c, err := New(key)
		if err != nil || len(cuts) > 16 {
			return
		}
		var msgs, ivs, want [][]byte
		for _, cut := range cuts {
			n := int(cut%16) * BlockSize
			if len(data) < n+BlockSize {
				break
			}
			iv, m := data[:BlockSize], bytes.Clone(data[BlockSize:BlockSize+n])
			data = data[BlockSize+n:]
			w := make([]byte, n)
			c.Encrypt(w, m, iv)
			msgs, ivs, want = append(msgs, m), append(ivs, iv), append(want, w)
		}
		if err := c.EncryptBatch(msgs, ivs); err != nil {
			t.Fatal(err)
		}
		for i := range msgs {
			if !bytes.Equal(msgs[i], want[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

// BenchmarkCBC: a 1,440-byte ESP body (a full-size TCP segment), this
// package against crypto/cipher.
func BenchmarkCBC(b *testing.B) {
	key, iv := make([]byte, 16), make([]byte, 16)
	buf := make([]byte, 1440)
	c, _ := New(key)
	ref, _ := aes.NewCipher(key)
	// The standard library's modes reused with SetIV, as tunnel/esp did:
	// no allocation per message.
	type ivSetter interface{ SetIV([]byte) }
	enc, dec := cipher.NewCBCEncrypter(ref, iv), cipher.NewCBCDecrypter(ref, iv)
	// The batch row moves four messages per op: its MB/s compares.
	four := [][]byte{buf, make([]byte, len(buf)), make([]byte, len(buf)), make([]byte, len(buf))}
	fourIVs := [][]byte{iv, iv, iv, iv}
	for _, bc := range []struct {
		name string
		msgs int
		f    func()
	}{
		{"encrypt/aescbc", 1, func() { c.Encrypt(buf, buf, iv) }},
		{"encrypt/crypto-cipher", 1, func() { enc.(ivSetter).SetIV(iv); enc.CryptBlocks(buf, buf) }},
		{"encrypt/aescbc-batch-of-4", 4, func() { c.EncryptBatch(four, fourIVs) }},
		{"decrypt/aescbc", 1, func() { c.Decrypt(buf, buf, iv) }},
		{"decrypt/crypto-cipher", 1, func() { dec.(ivSetter).SetIV(iv); dec.CryptBlocks(buf, buf) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(bc.msgs * len(buf)))
			for b.Loop() {
				bc.f()
			}
		})
	}
}
