package esp

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha512"
	"hash"
	"testing"
)

// TestHMACVectorsMD5SHA2 checks the new ESP integrity transforms against
// published vectors, through the same truncating macSum the packet path
// uses: HMAC-MD5-96 (RFC 2202 §2, RFC 2403), HMAC-SHA2-384-192 and
// HMAC-SHA2-512-256 (RFC 4868 §2.7.2.2, §2.7.2.3, keys of the ESP key length).
func TestHMACVectorsMD5SHA2(t *testing.T) {
	type hcase struct {
		Case   int
		Key    string
		Data   string
		MD5    string `json:"hmac_md5_96"`
		SHA384 string `json:"hmac_sha384_192"`
		SHA512 string `json:"hmac_sha512_256"`
	}
	var vm struct{ Cases []hcase }
	var vs struct {
		SHA384 []hcase `json:"sha384_cases"`
		SHA512 []hcase `json:"sha512_cases"`
	}
	loadJSON(t, "vectors/hmac_md5_96.json", &vm)
	loadJSON(t, "vectors/hmac_sha384_512.json", &vs)
	for _, c := range []struct {
		name   string
		auth   AuthAlg
		h      func() hash.Hash
		keyLen int
		cases  []hcase
		want   func(hcase) string
	}{
		{"HMAC-MD5-96", AuthHMACMD5, md5.New, 16, vm.Cases, func(c hcase) string { return c.MD5 }},
		{"HMAC-SHA2-384-192", AuthHMACSHA384, sha512.New384, 48, vs.SHA384, func(c hcase) string { return c.SHA384 }},
		{"HMAC-SHA2-512-256", AuthHMACSHA512, sha512.New, 64, vs.SHA512, func(c hcase) string { return c.SHA512 }},
	} {
		if len(c.cases) < 4 {
			t.Fatalf("%s: %d cases", c.name, len(c.cases))
		}
		// the ICV length newSuite picks for the transform
		o, _ := newPair(t, Algorithm{Enc: EncAESCBC, EncKeyBits: 128, Auth: c.auth})
		_, authLen, _ := o.Algorithm().KeymatLen()
		if authLen != c.keyLen {
			t.Errorf("%s: key length %d, want %d", c.name, authLen, c.keyLen)
		}
		s := &suite{icvLen: o.s.icvLen}
		for _, v := range c.cases {
			w := &work{mac: hmac.New(c.h, unhex(t, v.Key))}
			for range 2 {
				if got := s.macSum(w, unhex(t, v.Data)); !bytes.Equal(got, unhex(t, c.want(v))) {
					t.Errorf("%s case %d: %x, want %s", c.name, v.Case, got, c.want(v))
				}
			}
		}
	}
}
