package dh

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
)

type ecpVector struct {
	Curve                    string
	I, Gix, Giy, R, Grx, Gry string
	Girx, Giry               string
}

func loadECP(t testing.TB) map[string]ecpVector {
	raw, err := os.ReadFile("../../testdata/vectors/ecp_rfc5903.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups map[string]ecpVector `json:"groups"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f.Groups
}

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestECPRFC5903 checks groups 19, 20 and 21 against RFC 5903 §8.1-8.3: both
// public values (KE payloads, x | y) from the private keys, and the shared
// secret from both sides, which must be the x coordinate of g^ir only.
func TestECPRFC5903(t *testing.T) {
	vs := loadECP(t)
	if len(vs) != 3 {
		t.Fatalf("%d vector groups, want 3", len(vs))
	}
	for idStr, v := range vs {
		id, _ := strconv.Atoi(idStr)
		g, err := ByID(uint16(id))
		if err != nil {
			t.Fatal(err)
		}
		eg := g.(*ecpGroup)
		ki, err := eg.keyFromScalar(unhex(t, v.I))
		if err != nil {
			t.Fatal(err)
		}
		kr, err := eg.keyFromScalar(unhex(t, v.R))
		if err != nil {
			t.Fatal(err)
		}
		wantI := unhex(t, v.Gix+v.Giy)
		wantR := unhex(t, v.Grx+v.Gry)
		if !bytes.Equal(ki.Public(), wantI) || len(wantI) != g.PublicLen() {
			t.Errorf("group %d: g^i = %x, want %x", id, ki.Public(), wantI)
		}
		if !bytes.Equal(kr.Public(), wantR) {
			t.Errorf("group %d: g^r = %x, want %x", id, kr.Public(), wantR)
		}
		zi, err := ki.SharedSecret(wantR)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := kr.SharedSecret(wantI)
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, v.Girx)
		if !bytes.Equal(zi, want) || !bytes.Equal(zr, want) {
			t.Errorf("group %d: g^ir = %x / %x, want x only %x", id, zi, zr, want)
		}
	}
}

func TestAgreementEveryGroup(t *testing.T) {
	for _, id := range IDs {
		g, err := ByID(id)
		if err != nil {
			t.Fatal(err)
		}
		if g.ID() != id {
			t.Fatalf("ByID(%d).ID() = %d", id, g.ID())
		}
		a, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := g.GenerateKey(rand.Reader)
		if len(a.Public()) != g.PublicLen() || a.Group().ID() != id {
			t.Fatalf("%v: public %d bytes, want %d", g, len(a.Public()), g.PublicLen())
		}
		s1, err := a.SharedSecret(b.Public())
		if err != nil {
			t.Fatal(err)
		}
		s2, err := b.SharedSecret(a.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s1, s2) {
			t.Fatalf("%v: secrets differ", g)
		}
	}
}

func TestNames(t *testing.T) {
	want := map[uint16]string{2: "MODP1024", 5: "MODP1536", 14: "MODP2048", 15: "MODP3072", 16: "MODP4096",
		19: "ECP256", 20: "ECP384", 21: "ECP521", 1: "group#1", 24: "group#24"}
	for id, n := range want {
		if got := Name(id); got != n {
			t.Errorf("Name(%d) = %q, want %q", id, got, n)
		}
	}
	if _, err := ByID(1); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("group 1: %v", err)
	}
}

func TestRejectsBadPeerValues(t *testing.T) {
	vs := loadECP(t)
	for _, id := range IDs {
		g, _ := ByID(id)
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string][]byte{
			"empty": {}, "short": make([]byte, g.PublicLen()-1), "long": make([]byte, g.PublicLen()+1),
			"zeros": make([]byte, g.PublicLen()),
		}
		if v, ok := vs[strconv.Itoa(int(id))]; ok {
			off := unhex(t, v.Gix+v.Giy)
			off[len(off)-1] ^= 1 // y changed: not on the curve
			bad["off curve"] = off
			sec1 := append([]byte{4}, unhex(t, v.Gix+v.Giy)...)
			bad["SEC1 prefix"] = sec1
		}
		for name, p := range bad {
			if _, err := k.SharedSecret(p); !errors.Is(err, ErrInvalidPublicValue) {
				t.Errorf("%v %s: got %v", g, name, err)
			}
		}
	}
}

// TestGenerateKeyDeterministic: the key comes from the given reader only,
// draws again on an invalid scalar, and fails cleanly on a dead reader.
func TestGenerateKeyDeterministic(t *testing.T) {
	for _, id := range []uint16{19, 20, 21} {
		g, _ := ByID(id)
		seed := bytes.Repeat([]byte{0x5a}, 4096)
		a, err := g.GenerateKey(bytes.NewReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := g.GenerateKey(bytes.NewReader(seed))
		if !bytes.Equal(a.Public(), b.Public()) {
			t.Errorf("%v: same reader, different keys", g)
		}
		// An all-0xff draw is >= n for every curve: it must be skipped.
		skip := append(bytes.Repeat([]byte{0xff}, 66), seed...)
		c, err := g.GenerateKey(bytes.NewReader(skip))
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		if id != 21 && bytes.Equal(c.Public(), a.Public()) {
			t.Errorf("%v: invalid draw not rejected", g)
		}
		if _, err := g.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{0xff}, 1<<14))); err == nil && id != 21 {
			t.Errorf("%v: a reader of only invalid scalars gave a key", g)
		}
		if _, err := g.GenerateKey(bytes.NewReader(nil)); err == nil {
			t.Errorf("%v: empty reader gave a key", g)
		}
	}
}

// FuzzSharedSecret: any peer KE value for an ECP group either gives a secret
// of the field length or ErrInvalidPublicValue; never a panic. (The MODP
// range check is covered by crypto/modp; its exponentiations would make
// each fuzz execution cost milliseconds.)
func FuzzSharedSecret(f *testing.F) {
	vs := loadECP(f)
	for _, v := range vs {
		f.Add(uint8(0), unhex(f, v.Grx+v.Gry))
	}
	f.Add(uint8(3), []byte{1, 2, 3})
	ids := []uint16{19, 20, 21}
	keys := make([]PrivateKey, len(ids))
	for i, id := range ids {
		g, _ := ByID(id)
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		keys[i] = k
	}
	f.Fuzz(func(t *testing.T, which uint8, peer []byte) {
		k := keys[int(which)%len(keys)]
		s, err := k.SharedSecret(peer)
		if err != nil {
			if !errors.Is(err, ErrInvalidPublicValue) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(s) != k.Group().PublicLen()/2 {
			t.Fatalf("secret of %d bytes", len(s))
		}
	})
}
