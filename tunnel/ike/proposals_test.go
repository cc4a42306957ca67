package ike

import (
	"errors"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

func TestParsePhase1(t *testing.T) {
	aes := func(bits int, hash, group uint16) Phase1Transform {
		return Phase1Transform{Enc: EncAESCBC, KeyBits: bits, Hash: hash, Group: group}
	}
	for _, c := range []struct {
		in   string
		want []Phase1Transform
	}{
		{"aes256-sha256-modp2048,3des-sha1-modp1024", []Phase1Transform{aes(256, 4, 14), {Enc: Enc3DES, Hash: 2, Group: 2}}},
		{"aes128-sha1-ecp256", []Phase1Transform{aes(128, 2, 19)}},
		{"AES256-SHA384-ECP384!", []Phase1Transform{aes(256, 5, 20)}},
		{"aes192-sha512-modp3072 , aes-sha-modp4096", []Phase1Transform{aes(192, 6, 15), aes(128, 2, 16)}},
		{"aes256-sha2_256-ecp521,aes256-md5-modp1536", []Phase1Transform{aes(256, 4, 21), aes(256, 1, 5)}},
		// several of a kind: every combination, encryption outermost
		{"aes128-aes256-sha1-sha256-modp2048", []Phase1Transform{aes(128, 2, 14), aes(128, 4, 14), aes(256, 2, 14), aes(256, 4, 14)}},
		// duplicates dropped
		{"aes256-sha1-modp2048,aes256-sha1-modp2048", []Phase1Transform{aes(256, 2, 14)}},
	} {
		got, err := ParsePhase1(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if FormatPhase1(got) != FormatPhase1(c.want) {
			t.Errorf("%q: got %s, want %s", c.in, FormatPhase1(got), FormatPhase1(c.want))
		}
	}
}

func TestParsePhase1Errors(t *testing.T) {
	for in, mention := range map[string]string{
		"":                               "empty",
		"aes256-sha256-modp2049":         `"modp2049"`,
		"aes256-sha256":                  "no DH group",
		"aes256-modp2048":                "no hash",
		"sha1-modp2048":                  "no encryption",
		"aes128gcm16-sha1-modp2048":      `"aes128gcm16"`,
		"aes256-sha1-modp2048,":          "empty proposal",
		"aes256--sha1-modp2048":          "empty algorithm",
		"aes256-sha1-modp2048-noesn":     `"noesn"`,
		"aes512-sha1-modp2048":           `"aes512"`,
		"aes256-prfsha256-sha1-modp2048": `"prfsha256"`,
		strings.Repeat("aes128-aes192-aes256-3des-", 1) + "md5-sha1-sha256-sha384-sha512-modp1024-modp1536-modp2048-modp3072": "more than 64",
	} {
		_, err := ParsePhase1(in)
		if !errors.Is(err, ErrBadProposal) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), mention) {
			t.Errorf("%q: %v (want it to mention %s)", in, err, mention)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: multi-line error", in)
		}
	}
}

func TestParsePhase2(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []esp.Algorithm
	}{
		{"aes128gcm16,aes256-sha1", []esp.Algorithm{{Enc: esp.EncAESGCM16, EncKeyBits: 128}, {Enc: esp.EncAESCBC, EncKeyBits: 256, Auth: esp.AuthHMACSHA1}}},
		{"aes256gcm8,aes192gcm12,aes128gcm128", []esp.Algorithm{{Enc: esp.EncAESGCM8, EncKeyBits: 256}, {Enc: esp.EncAESGCM12, EncKeyBits: 192}, {Enc: esp.EncAESGCM16, EncKeyBits: 128}}},
		{"aes256gcm64-aes256gcm96", []esp.Algorithm{{Enc: esp.EncAESGCM8, EncKeyBits: 256}, {Enc: esp.EncAESGCM12, EncKeyBits: 256}}},
		{"3des-md5,aes192-sha384-sha512-noesn", []esp.Algorithm{{Enc: esp.Enc3DES, EncKeyBits: 192, Auth: esp.AuthHMACMD5},
			{Enc: esp.EncAESCBC, EncKeyBits: 192, Auth: esp.AuthHMACSHA384}, {Enc: esp.EncAESCBC, EncKeyBits: 192, Auth: esp.AuthHMACSHA512}}},
		{"aes-sha256!", []esp.Algorithm{{Enc: esp.EncAESCBC, EncKeyBits: 128, Auth: esp.AuthHMACSHA256}}},
	} {
		got, err := ParsePhase2(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if FormatPhase2(got) != FormatPhase2(c.want) || len(got) != len(c.want) {
			t.Errorf("%q: got %s, want %s", c.in, FormatPhase2(got), FormatPhase2(c.want))
		}
	}
}

func TestParsePhase2Errors(t *testing.T) {
	for in, mention := range map[string]string{
		"":                        "empty",
		"aes128-sha1-modp2048":    "PFS uses the phase-1 group",
		"aes128gcm16-sha1":        "no integrity",
		"aes128":                  "no integrity algorithm",
		"sha1":                    "no encryption",
		"aes128gcm16-aes128-sha1": "mixed",
		"aes128gcm24":             `"aes128gcm24"`,
		"blowfish-sha1":           `"blowfish"`,
	} {
		_, err := ParsePhase2(in)
		if !errors.Is(err, ErrBadProposal) || !strings.Contains(err.Error(), mention) {
			t.Errorf("%q: %v (want it to mention %s)", in, err, mention)
		}
	}
}

// TestDefaultsRoundTrip: the default lists, written in the proposal syntax,
// parse back to themselves, and every transform can be keyed.
func TestDefaultsRoundTrip(t *testing.T) {
	p1, err := ParsePhase1(FormatPhase1(DefaultPhase1))
	if err != nil || FormatPhase1(p1) != FormatPhase1(DefaultPhase1) || len(p1) != len(DefaultPhase1) {
		t.Fatalf("phase 1: %v %s", err, FormatPhase1(p1))
	}
	p2, err := ParsePhase2(FormatPhase2(DefaultPhase2))
	if err != nil || len(p2) != len(DefaultPhase2) {
		t.Fatalf("phase 2: %v", err)
	}
	for i := range p2 {
		if p2[i] != DefaultPhase2[i] {
			t.Fatalf("phase 2 #%d: %v, want %v", i, p2[i], DefaultPhase2[i])
		}
	}
	if _, err := NewInitiator(Config{PSK: []byte("x"), LocalAddr: clientAddr, RemoteAddr: serverAddr}, &pipe{}); err != nil {
		t.Fatal(err)
	}
	// MM1 with the default offer: SA payload size (a full MM1 adds the
	// 28-byte header and the vendor IDs, about 100 bytes).
	if n := len(encodeP1SA(DefaultPhase1, defaultP1Life)); n > 1000 {
		t.Errorf("default phase-1 SA payload is %d bytes", n)
	}
}

// FuzzParseProposals: any string either parses to 1..64 keyable transforms
// that format and parse back to the same, or fails with ErrBadProposal.
func FuzzParseProposals(f *testing.F) {
	for _, s := range []string{"aes256-sha256-modp2048,3des-sha1-modp1024", "aes128gcm16,aes256-sha1", "aes-aes192-sha1-sha512-ecp256-modp4096!", "3des-md5-noesn", ",", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p1, err := ParsePhase1(s); err != nil {
			if !errors.Is(err, ErrBadProposal) {
				t.Fatalf("phase 1 %q: %v", s, err)
			}
		} else {
			if len(p1) == 0 || len(p1) > maxTransforms {
				t.Fatalf("%q: %d transforms", s, len(p1))
			}
			for _, tr := range p1 {
				if _, _, err := p1KeyLen(tr.Enc, tr.KeyBits); err != nil {
					t.Fatalf("%q: %v", s, err)
				}
			}
			back, err := ParsePhase1(FormatPhase1(p1))
			if err != nil || FormatPhase1(back) != FormatPhase1(p1) {
				t.Fatalf("%q: round trip %v", s, err)
			}
		}
		if p2, err := ParsePhase2(s); err != nil {
			if !errors.Is(err, ErrBadProposal) {
				t.Fatalf("phase 2 %q: %v", s, err)
			}
		} else {
			if len(p2) == 0 || len(p2) > maxTransforms {
				t.Fatalf("%q: %d transforms", s, len(p2))
			}
			for _, a := range p2 {
				if _, _, err := a.KeymatLen(); err != nil {
					t.Fatalf("%q: %v", s, err)
				}
			}
			back, err := ParsePhase2(FormatPhase2(p2))
			if err != nil || FormatPhase2(back) != FormatPhase2(p2) {
				t.Fatalf("%q: round trip %v", s, err)
			}
		}
	})
}
