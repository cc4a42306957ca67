package modp

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"
)

type groupsFile struct {
	Source string `json:"source"`
	Groups map[string]struct {
		Bits      int    `json:"bits"`
		Generator int64  `json:"generator"`
		PrimeHex  string `json:"prime_hex"`
	} `json:"groups"`
}

// TestPrimesMatchVectors checks every implemented group against
// testdata/vectors/modp_groups.json (RFC 2409 §6.2, RFC 3526 §2, §3).
func TestPrimesMatchVectors(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/vectors/modp_groups.json")
	if err != nil {
		t.Fatal(err)
	}
	var f groupsFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for idStr, v := range f.Groups {
		id, _ := strconv.Atoi(idStr)
		g, err := ByID(uint16(id))
		if id == 1 {
			if !errors.Is(err, ErrUnknownGroup) {
				t.Errorf("group 1 should be unsupported, got %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("group %d: %v", id, err)
		}
		want, _ := new(big.Int).SetString(strings.ToLower(v.PrimeHex), 16)
		if g.P.Cmp(want) != 0 || g.Bits != v.Bits || g.G.Int64() != v.Generator || g.Len()*8 != v.Bits {
			t.Errorf("group %d differs from %s", id, f.Source)
		}
		checked++
	}
	if checked != 5 {
		t.Fatalf("checked %d groups, want 5", checked)
	}
}

func TestAgreementAndPadding(t *testing.T) {
	for _, id := range []uint16{2, 5, 14, 15, 16} {
		g, _ := ByID(id)
		a, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := g.GenerateKey(rand.Reader)
		if len(a.Public()) != g.Len() {
			t.Fatalf("public len %d", len(a.Public()))
		}
		s1, err := a.SharedSecret(b.Public())
		if err != nil {
			t.Fatal(err)
		}
		s2, err := b.SharedSecret(a.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s1, s2) || len(s1) != g.Len() {
			t.Fatalf("group %d: secrets differ", id)
		}
	}
}

// TestSmallValuesArePadded uses an exponent and a peer value that give short
// results, so an implementation using big.Int.Bytes would fail.
func TestSmallValuesArePadded(t *testing.T) {
	g, _ := ByID(2)
	k := g.keyFromExponent(big.NewInt(1)) // g^1 = 2
	pub := k.Public()
	if len(pub) != 128 || pub[127] != 2 || !bytes.Equal(pub[:127], make([]byte, 127)) {
		t.Fatalf("public not padded: %x", pub)
	}
	// peer 2, x = 1 -> shared = 2
	s, err := k.SharedSecret([]byte{2})
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 128 || s[127] != 2 || s[0] != 0 {
		t.Fatalf("secret not padded: %x", s)
	}
}

func TestRejectsDegeneratePeerValues(t *testing.T) {
	g, _ := ByID(14)
	k, _ := g.GenerateKey(rand.Reader)
	pm1 := new(big.Int).Sub(g.P, big.NewInt(1)).FillBytes(make([]byte, g.Len()))
	p := g.P.FillBytes(make([]byte, g.Len()))
	for name, v := range map[string][]byte{
		"empty": {}, "zero": {0}, "one": {1}, "p-1": pm1, "p": p,
		"too long": make([]byte, g.Len()+1),
	} {
		if _, err := k.SharedSecret(v); !errors.Is(err, ErrInvalidPublicValue) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	pm2 := new(big.Int).Sub(g.P, big.NewInt(2)).FillBytes(make([]byte, g.Len()))
	if _, err := k.SharedSecret(pm2); err != nil {
		t.Errorf("p-2 rejected: %v", err)
	}
}

func TestGenerateKeyShortRand(t *testing.T) {
	g, _ := ByID(2)
	if _, err := g.GenerateKey(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("short random source accepted")
	}
}

// atanInv returns atan(1/x) as a fixed-point number scaled by 2^prec
// (Gregory series), for Machin's formula pi = 16 atan(1/5) - 4 atan(1/239).
func atanInv(x int64, prec uint) *big.Int {
	one := new(big.Int).Lsh(big.NewInt(1), prec)
	xx := big.NewInt(x * x)
	term := new(big.Int).Div(one, big.NewInt(x))
	sum := new(big.Int).Set(term)
	for n := int64(1); term.Sign() != 0; n++ {
		term.Div(term, xx)
		t := new(big.Int).Div(term, big.NewInt(2*n+1))
		if n%2 == 1 {
			sum.Sub(sum, t)
		} else {
			sum.Add(sum, t)
		}
	}
	return sum
}

// TestPrimesFromRFCFormula recomputes every prime from its defining formula,
// p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k) (RFC 2409 §6.2,
// RFC 3526 §2-§5), independently of any copied hex, and checks that p and
// (p-1)/2 are prime (the groups are safe-prime groups).
func TestPrimesFromRFCFormula(t *testing.T) {
	const guard = 64 // extra bits of pi beyond those used; the truncation error stays far below 1
	for _, c := range []struct {
		id   uint16
		bits int
		k    int64
	}{{2, 1024, 129093}, {5, 1536, 741804}, {14, 2048, 124476}, {15, 3072, 1690314}, {16, 4096, 240904}} {
		prec := uint(c.bits) + guard
		pi := new(big.Int).Sub(new(big.Int).Mul(big.NewInt(16), atanInv(5, prec)), new(big.Int).Mul(big.NewInt(4), atanInv(239, prec)))
		f := new(big.Int).Rsh(pi, prec-uint(c.bits-130))
		f.Add(f, big.NewInt(c.k))
		f.Lsh(f, 64)
		p := new(big.Int).Lsh(big.NewInt(1), uint(c.bits))
		p.Sub(p, new(big.Int).Lsh(big.NewInt(1), uint(c.bits-64)))
		p.Sub(p, big.NewInt(1))
		p.Add(p, f)
		g, err := ByID(c.id)
		if err != nil {
			t.Fatal(err)
		}
		if g.P.Cmp(p) != 0 {
			t.Errorf("group %d: prime differs from the RFC formula", c.id)
		}
		if !p.ProbablyPrime(8) || !new(big.Int).Rsh(p, 1).ProbablyPrime(8) {
			t.Errorf("group %d: not a safe prime", c.id)
		}
	}
}
