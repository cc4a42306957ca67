package ikev1

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/capture"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// TestCAVP checks SKEYID and SKEYID_d/a/e against the NIST CAVP IKEv1 PSK
// vector (testdata/vectors/ikev1_psk_kdf.json).
func TestCAVP(t *testing.T) {
	var f struct {
		Vectors []map[string]any `json:"vectors"`
	}
	readJSON(t, "../../testdata/vectors/ikev1_psk_kdf.json", &f)
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range f.Vectors {
		g := func(k string) []byte { return unhex(t, v[k].(string)) }
		s, err := NewSuite(HashSHA1)
		if err != nil {
			t.Fatal(err)
		}
		skeyid := s.SKEYIDPSK(g("pre_shared_key"), g("Ni_b"), g("Nr_b"))
		if !bytes.Equal(skeyid, g("SKEYID")) {
			t.Fatalf("SKEYID %x", skeyid)
		}
		ks := s.DeriveKeys(skeyid, g("g_xy"), g("CKY_I"), g("CKY_R"))
		for name, got := range map[string][]byte{"SKEYID_d": ks.D, "SKEYID_a": ks.A, "SKEYID_e": ks.E} {
			if !bytes.Equal(got, g(name)) {
				t.Errorf("%s = %x", name, got)
			}
		}
	}
}

// TestDerivedExamples checks Appendix-B expansion, IVs, HASH(3), KEYMAT and
// NAT-D against testdata/vectors/ikev1_derived_examples.json.
func TestDerivedExamples(t *testing.T) {
	var f struct {
		AppB struct {
			SKEYIDe string `json:"SKEYID_e"`
			K16     string `json:"Ka_AES128_16B"`
			K24     string `json:"Ka_3DES_24B"`
			K32     string `json:"Ka_AES256_32B"`
		} `json:"appendix_b_key_expansion"`
		P1 struct {
			AES  string `json:"IV_AES_16B"`
			DES3 string `json:"IV_3DES_8B"`
		} `json:"phase1_iv"`
		P2 struct {
			Last string `json:"last_phase1_cbc_block"`
			MID  string `json:"message_id"`
			AES  string `json:"IV_AES_16B"`
		} `json:"phase2_iv"`
		QM   map[string]string `json:"quick_mode"`
		NATD struct {
			CKYI  string `json:"CKY_I"`
			CKYR  string `json:"CKY_R"`
			IP    string `json:"ip"`
			P500  string `json:"port_500_SHA1"`
			P4500 string `json:"port_4500_SHA1"`
		} `json:"nat_d"`
	}
	readJSON(t, "../../testdata/vectors/ikev1_derived_examples.json", &f)
	s, _ := NewSuite(HashSHA1)
	e := unhex(t, f.AppB.SKEYIDe)
	for n, want := range map[int]string{16: f.AppB.K16, 24: f.AppB.K24, 32: f.AppB.K32} {
		if got := s.EncryptionKey(e, n); hex.EncodeToString(got) != want {
			t.Errorf("Ka(%d) = %x want %s", n, got, want)
		}
	}
	gxi := bytes.Repeat([]byte{0x11}, 128)
	gxr := bytes.Repeat([]byte{0x22}, 128)
	if got := hex.EncodeToString(s.Phase1IV(gxi, gxr, 16)); got != f.P1.AES {
		t.Errorf("phase1 IV %s", got)
	}
	if got := hex.EncodeToString(s.Phase1IV(gxi, gxr, 8)); got != f.P1.DES3 {
		t.Errorf("phase1 IV 3DES %s", got)
	}
	mid := binary.BigEndian.Uint32(unhex(t, f.P2.MID[:8]))
	if got := hex.EncodeToString(s.Phase2IV(unhex(t, f.P2.Last[:32]), mid, 16)); got != f.P2.AES {
		t.Errorf("phase2 IV %s", got)
	}
	q := f.QM
	ni, nr := unhex(t, q["Ni_b"]), unhex(t, q["Nr_b"])
	qmid := binary.BigEndian.Uint32(unhex(t, q["message_id"]))
	if got := hex.EncodeToString(s.QMHash3(unhex(t, q["SKEYID_a"]), qmid, ni, nr)); got != q["HASH3"] {
		t.Errorf("HASH3 %s", got)
	}
	d := unhex(t, q["SKEYID_d"])
	if got := hex.EncodeToString(s.Keymat(d, nil, 3, 0x0badc0de, ni, nr, 36)); got != q["KEYMAT_36B_initiator_to_responder_(uses_SPI_0badc0de)"] {
		t.Errorf("KEYMAT i->r %s", got)
	}
	if got := hex.EncodeToString(s.Keymat(d, nil, 3, 0xc0ffee01, ni, nr, 36)); got != q["KEYMAT_36B_responder_to_initiator_(uses_SPI_c0ffee01)"] {
		t.Errorf("KEYMAT r->i %s", got)
	}
	ci, cr := unhex(t, f.NATD.CKYI), unhex(t, f.NATD.CKYR)
	ip := netip.MustParseAddr(f.NATD.IP)
	if got := hex.EncodeToString(s.NATD(ci, cr, netip.AddrPortFrom(ip, 500))); got != f.NATD.P500 {
		t.Errorf("NAT-D 500 %s", got)
	}
	if got := hex.EncodeToString(s.NATD(ci, cr, netip.AddrPortFrom(ip, 4500))); got != f.NATD.P4500 {
		t.Errorf("NAT-D 4500 %s", got)
	}
}

// TestCaptureKeys recomputes every phase-1 key and both ESP KEYMATs of the
// three real sessions in testdata/captures from the PSK and the public
// values (all three negotiated SHA2-256 PRF, AES-256 IKE, AES-128/SHA1 ESP).
func TestCaptureKeys(t *testing.T) {
	dirs, _ := capture.Sessions("../../testdata/captures")
	if len(dirs) != 3 {
		t.Fatalf("found %d captures", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			k, err := capture.LoadKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := NewSuite(HashSHA256)
			skeyid := s.SKEYIDPSK(k.PSK, k.Ni, k.Nr)
			if !bytes.Equal(skeyid, k.SKEYID) {
				t.Fatalf("SKEYID %x", skeyid)
			}
			ks := s.DeriveKeys(skeyid, k.GXY, k.ICookie, k.RCookie)
			if !bytes.Equal(ks.D, k.SKEYIDd) || !bytes.Equal(ks.A, k.SKEYIDa) || !bytes.Equal(ks.E, k.SKEYIDe) {
				t.Fatal("SKEYID_d/a/e differ")
			}
			if got := s.EncryptionKey(ks.E, 32); !bytes.Equal(got, k.Ka) {
				t.Errorf("Ka %x", got)
			}
			if got := s.Phase1IV(k.GXI, k.GXR, 16); !bytes.Equal(got, k.IVMM5) {
				t.Errorf("IV %x", got)
			}
			for dir, e := range k.ESP {
				km := s.Keymat(ks.D, nil, 3, e.SPI, k.QMNi, k.QMNr, 36)
				if !bytes.Equal(km[:16], e.EncKey) || !bytes.Equal(km[16:], e.AuthKey) {
					t.Errorf("%s: KEYMAT %x", dir, km)
				}
			}
			if len(k.ESP) != 2 {
				t.Errorf("%d ESP directions", len(k.ESP))
			}
		})
	}
}

func TestUnsupportedHash(t *testing.T) {
	if _, err := NewSuite(3); err == nil {
		t.Fatal("tiger accepted")
	}
	for _, a := range []HashAlg{HashMD5, HashSHA1, HashSHA256, HashSHA384, HashSHA512} {
		s, err := NewSuite(a)
		if err != nil || len(s.PRF([]byte("k"), []byte("d"))) != s.Size() {
			t.Fatalf("%v: %v", a, err)
		}
	}
}
