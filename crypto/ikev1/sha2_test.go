package ikev1

import (
	"bytes"
	"testing"
)

// TestPRFSHA384SHA512 checks the IKEv1 prf for the SHA2-384 and SHA2-512
// hash attributes (5, 6) against RFC 4868 §2.7.1: without a PRF attribute
// the prf is HMAC with the negotiated hash (RFC 2409 §4).
func TestPRFSHA384SHA512(t *testing.T) {
	var v struct {
		PRF []struct {
			Case   int
			Key    string
			Data   string
			SHA384 string `json:"prf_hmac_sha384"`
			SHA512 string `json:"prf_hmac_sha512"`
		} `json:"prf_cases"`
	}
	readJSON(t, "../../testdata/vectors/hmac_sha384_512.json", &v)
	if len(v.PRF) != 5 {
		t.Fatalf("%d PRF cases, want 5", len(v.PRF))
	}
	s384, _ := NewSuite(HashSHA384)
	s512, _ := NewSuite(HashSHA512)
	for _, c := range v.PRF {
		key, data := unhex(t, c.Key), unhex(t, c.Data)
		// split the data in two to exercise the concatenating form
		if got := s384.PRF(key, data[:3], data[3:]); !bytes.Equal(got, unhex(t, c.SHA384)) {
			t.Errorf("SHA2-384 case %d: %x", c.Case, got)
		}
		if got := s512.PRF(key, data); !bytes.Equal(got, unhex(t, c.SHA512)) {
			t.Errorf("SHA2-512 case %d: %x", c.Case, got)
		}
	}
}

// TestAppendixBWithLongPRF: with SHA2-384/512 SKEYID_e (48/64 bytes) is at
// least as long as every phase-1 key (AES-256: 32, 3DES: 24), so RFC 2409
// Appendix B takes its first bytes and never expands; with SHA1 (20 bytes)
// AES-192 needs K1|K2 (RFC 2409 Appendix B).
func TestAppendixBWithLongPRF(t *testing.T) {
	for _, alg := range []HashAlg{HashSHA384, HashSHA512} {
		s, _ := NewSuite(alg)
		e := s.PRF([]byte("skeyid"), []byte("e"))
		for _, n := range []int{16, 24, 32} {
			if got := s.EncryptionKey(e, n); !bytes.Equal(got, e[:n]) {
				t.Errorf("%v: %d-byte key is not the prefix of SKEYID_e", alg, n)
			}
		}
		if iv := s.Phase1IV([]byte{1}, []byte{2}, 16); !bytes.Equal(iv, s.Hash([]byte{1}, []byte{2})[:16]) {
			t.Errorf("%v: phase-1 IV", alg)
		}
	}
	s, _ := NewSuite(HashSHA1)
	e := s.PRF([]byte("skeyid"), []byte("e"))
	k1 := s.PRF(e, []byte{0})
	k2 := s.PRF(e, k1)
	if got := s.EncryptionKey(e, 24); !bytes.Equal(got, append(k1, k2...)[:24]) {
		t.Errorf("AES-192 with SHA1: %x", got)
	}
}
