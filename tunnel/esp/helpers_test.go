package esp

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

const testdataDir = "../../testdata"

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func loadJSON(t testing.TB, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// allSuites lists every suite the package supports.
func allSuites() []Algorithm {
	var out []Algorithm
	auths := []AuthAlg{AuthHMACMD5, AuthHMACSHA1, AuthHMACSHA256, AuthHMACSHA384, AuthHMACSHA512}
	for _, a := range auths {
		out = append(out, Algorithm{Enc: Enc3DES, EncKeyBits: 192, Auth: a})
		for _, bits := range []int{128, 192, 256} {
			out = append(out, Algorithm{Enc: EncAESCBC, EncKeyBits: bits, Auth: a})
		}
	}
	for _, enc := range []EncTransform{EncAESGCM8, EncAESGCM12, EncAESGCM16} {
		for _, bits := range []int{128, 192, 256} {
			out = append(out, Algorithm{Enc: enc, EncKeyBits: bits})
		}
	}
	return out
}

// testKeys returns deterministic keys for alg (not secret, test only).
func testKeys(t testing.TB, alg Algorithm, spi uint32, seed byte) Keys {
	t.Helper()
	el, al, err := alg.KeymatLen()
	if err != nil {
		t.Fatal(err)
	}
	k := Keys{SPI: spi, Alg: alg, EncKey: make([]byte, el)}
	for i := range k.EncKey {
		k.EncKey[i] = seed + byte(i)*7
	}
	if al > 0 {
		k.AuthKey = make([]byte, al)
		for i := range k.AuthKey {
			k.AuthKey[i] = seed ^ byte(i*13+1)
		}
	}
	return k
}

func newPair(t testing.TB, alg Algorithm) (*Outbound, *Inbound) {
	t.Helper()
	k := testKeys(t, alg, 0x1000a, 0x42)
	o, err := NewOutbound(k, nil)
	if err != nil {
		t.Fatalf("NewOutbound(%v): %v", alg, err)
	}
	in, err := NewInbound(k)
	if err != nil {
		t.Fatalf("NewInbound(%v): %v", alg, err)
	}
	return o, in
}

// sealCopy seals a copy of payload with exactly the promised headroom and
// tailroom, so that any write outside them would be caught by the slice.
func sealCopy(t testing.TB, o *Outbound, payload []byte, nh byte) []byte {
	t.Helper()
	hr := o.Headroom()
	buf := make([]byte, hr+len(payload), hr+len(payload)+o.Tailroom())
	copy(buf[hr:], payload)
	pkt, err := o.Seal(buf, hr, nh)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return pkt
}

// sealTrailer encrypts and authenticates, the way Seal would, a plaintext
// ending in trailer (pad bytes, pad length, next header), so that only the
// trailer check can reject the packet. short: the plaintext is one block.
func sealTrailer(o *Outbound, trailer []byte, short bool) []byte {
	plain := append(make([]byte, 16), trailer...)
	for len(plain)%o.s.align != 0 {
		plain = append([]byte{0xAB}, plain...)
	}
	if short {
		plain = plain[len(plain)-o.s.align:]
	}
	hr := o.Headroom()
	seq := uint32(o.seq.Add(1))
	pkt := make([]byte, hr+len(plain), hr+len(plain)+64)
	copy(pkt[hr:], plain)
	binary.BigEndian.PutUint32(pkt, o.SPI())
	binary.BigEndian.PutUint32(pkt[4:], seq)
	w := o.s.pool.Get().(*work)
	defer o.s.pool.Put(w)
	body := pkt[hr:]
	if o.s.aead {
		copy(w.nonce[saltLen:], pkt[8:hr])
		pkt = o.s.gcm.Seal(pkt[:hr], w.nonce[:], body, pkt[:8])
		return pkt[:hr+len(plain)+o.s.icvLen]
	}
	if err := o.s.cryptCBC(w, pkt[8:hr], body, true); err != nil {
		panic(err) // a test helper: the plaintext is whole blocks
	}
	return append(pkt, o.s.macSum(w, pkt)...)
}
