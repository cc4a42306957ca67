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
	if checked != 3 {
		t.Fatalf("checked %d groups, want 3", checked)
	}
}

func TestAgreementAndPadding(t *testing.T) {
	for _, id := range []uint16{2, 5, 14} {
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
