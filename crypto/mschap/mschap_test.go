package mschap

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vectorsDir = "../../testdata/vectors"

func loadJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "S="))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func to16(t *testing.T, s string) (a [16]byte) {
	t.Helper()
	b := unhex(t, s)
	if len(b) != 16 {
		t.Fatalf("want 16 bytes, got %d", len(b))
	}
	copy(a[:], b)
	return a
}

func to24(t *testing.T, s string) (a [24]byte) {
	t.Helper()
	b := unhex(t, s)
	if len(b) != 24 {
		t.Fatalf("want 24 bytes, got %d", len(b))
	}
	copy(a[:], b)
	return a
}

func TestRFC2759Vector(t *testing.T) {
	var v struct {
		Source string
		Inputs struct {
			UserName, Password, AuthenticatorChallenge, PeerChallenge string
		}
		Outputs map[string]string
	}
	loadJSON(t, "mschapv2_rfc2759_rfc3079.json", &v)
	in, out := v.Inputs, v.Outputs
	ac, pc := to16(t, in.AuthenticatorChallenge), to16(t, in.PeerChallenge)
	pw := []byte(in.Password)

	if got := ChallengeHash(pc, ac, in.UserName); !bytes.Equal(got[:], unhex(t, out["ChallengeHash_8B"])) {
		t.Errorf("ChallengeHash = %x", got)
	}
	// The DOMAIN\ prefix is not hashed.
	if a, b := ChallengeHash(pc, ac, "CORP\\"+in.UserName), ChallengeHash(pc, ac, in.UserName); a != b {
		t.Errorf("ChallengeHash with domain differs")
	}
	ph := NTPasswordHash(pw)
	if !bytes.Equal(ph[:], unhex(t, out["PasswordHash_NTHash"])) {
		t.Errorf("NTPasswordHash = %x", ph)
	}
	if got := HashNTPasswordHash(ph); !bytes.Equal(got[:], unhex(t, out["PasswordHashHash"])) {
		t.Errorf("HashNTPasswordHash = %x", got)
	}
	nt := GenerateNTResponse(ac, pc, in.UserName, pw)
	if !bytes.Equal(nt[:], unhex(t, out["NT_Response_24B"])) {
		t.Errorf("NT-Response = %x", nt)
	}
	ar := GenerateAuthenticatorResponse(pw, nt, pc, ac, in.UserName)
	if got := FormatAuthenticatorResponse(ar); got != out["AuthenticatorResponse"] {
		t.Errorf("authenticator response = %s, want %s", got, out["AuthenticatorResponse"])
	}
	msg := []byte(out["AuthenticatorResponse"] + " M=Welcome")
	if ok, text := CheckAuthenticatorResponse(pw, nt, pc, ac, in.UserName, msg); !ok || text != "Welcome" {
		t.Errorf("CheckAuthenticatorResponse = %v %q", ok, text)
	}
	if ok, _ := CheckAuthenticatorResponse([]byte("wrong"), nt, pc, ac, in.UserName, msg); ok {
		t.Errorf("wrong password accepted")
	}
	bad := bytes.Clone(msg)
	bad[5] ^= 1
	if ok, _ := CheckAuthenticatorResponse(pw, nt, pc, ac, in.UserName, bad); ok {
		t.Errorf("corrupted S= accepted")
	}
}

func TestMSCHAPv1ChallengeResponse(t *testing.T) {
	var v struct {
		Mschapv1Extra struct{ Password, Challenge, NT_Response string } `json:"mschapv1_extra"`
	}
	loadJSON(t, "mschapv2_rfc2759_rfc3079.json", &v)
	var ch [8]byte
	copy(ch[:], unhex(t, v.Mschapv1Extra.Challenge))
	got := ChallengeResponse(ch, NTPasswordHash([]byte(v.Mschapv1Extra.Password)))
	if !bytes.Equal(got[:], unhex(t, v.Mschapv1Extra.NT_Response)) {
		t.Errorf("ChallengeResponse = %x", got)
	}
}

func TestCaptureSessions(t *testing.T) {
	var v struct {
		User, Password string
		Sessions       map[string]map[string]string
	}
	loadJSON(t, "mschapv2_captures.json", &v)
	if len(v.Sessions) != 3 {
		t.Fatalf("want 3 sessions, got %d", len(v.Sessions))
	}
	for name, s := range v.Sessions {
		ac, pc := to16(t, s["authenticator_challenge"]), to16(t, s["peer_challenge"])
		nt := GenerateNTResponse(ac, pc, s["name"], []byte(v.Password))
		if want := to24(t, s["nt_response"]); nt != want {
			t.Errorf("%s: NT-Response %x, want %x", name, nt, want)
		}
		rv := NewResponseValue(pc, nt)
		if !bytes.Equal(rv[:], unhex(t, s["response_value"])) {
			t.Errorf("%s: response value %x", name, rv)
		}
		gpc, gnt, flags, err := ParseResponseValue(rv[:])
		if err != nil || gpc != pc || gnt != nt || flags != 0 {
			t.Errorf("%s: ParseResponseValue round trip failed: %v", name, err)
		}
		ar := GenerateAuthenticatorResponse([]byte(v.Password), nt, pc, ac, s["name"])
		if !bytes.Equal(ar[:], unhex(t, s["authenticator_response"])) {
			t.Errorf("%s: authenticator response %x", name, ar)
		}
		if ok, _ := CheckAuthenticatorResponse([]byte(v.Password), nt, pc, ac, v.User, []byte(s["success_message"])); !ok {
			t.Errorf("%s: real success message %q not accepted", name, s["success_message"])
		}
	}
}

func TestCHAPMD5(t *testing.T) {
	var v struct {
		ChapMD5 struct{ Identifier, Secret_ascii, Challenge, Response string } `json:"chap_md5"`
	}
	loadJSON(t, "chap_md5_computed.json", &v)
	c := v.ChapMD5
	id := unhex(t, c.Identifier)[0]
	got := CHAPMD5Response(id, []byte(c.Secret_ascii), unhex(t, c.Challenge))
	if !bytes.Equal(got[:], unhex(t, c.Response)) {
		t.Errorf("CHAPMD5Response = %x", got)
	}
	if again := CHAPMD5Response(id+1, []byte(c.Secret_ascii), unhex(t, c.Challenge)); again == got {
		t.Errorf("identifier not covered")
	}
}

func TestParseSuccess(t *testing.T) {
	const hexs = "407A5589115FD0D6209F510FE9C04566932CDA56"
	for _, tc := range []struct {
		in   string
		ok   bool
		text string
	}{
		{"S=" + hexs + " M=Access granted", true, "Access granted"},
		{"S=" + hexs, true, ""},
		{"S=" + hexs + "M=x", true, "x"},
		{"S=" + strings.ToLower(hexs) + " M=", true, ""},
		{"S=" + hexs[:39], false, ""},
		{"S=" + hexs[:38] + "ZZ", false, ""},
		{"s=" + hexs, false, ""},
		{"S=" + hexs + " X=1", false, ""},
		{"", false, ""},
	} {
		a, text, err := ParseSuccess([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.ok && (text != tc.text || !strings.EqualFold(hex.EncodeToString(a[:]), hexs)) {
			t.Errorf("%q: got %x %q", tc.in, a, text)
		}
	}
}

func TestParseFailure(t *testing.T) {
	f, err := ParseFailure([]byte("E=691 R=1 C=0102030405060708090A0B0C0D0E0F10 V=0 M=Access denied"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Code != 691 || !f.Retry || !f.HasChallenge || f.Challenge[0] != 1 || f.Challenge[15] != 0x10 || f.Version != 0 || f.Message != "Access denied" {
		t.Errorf("got %+v", f)
	}
	var ch [16]byte
	ch[3] = 0xab
	msg := FormatFailure(691, false, ch, 3, "Authentication failed")
	f, err = ParseFailure([]byte(msg))
	if err != nil || f.Code != 691 || f.Retry || f.Challenge != ch || f.Version != 3 || f.Message != "Authentication failed" {
		t.Errorf("round trip %q: %+v %v", msg, f, err)
	}
	if f, err := ParseFailure([]byte("E=648")); err != nil || f.Code != 648 {
		t.Errorf("bare E=: %+v %v", f, err)
	}
	for _, bad := range []string{"", "M=hi", "E=x R=1", "garbage"} {
		if _, err := ParseFailure([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNTPasswordHashUnicode(t *testing.T) {
	// "é" is U+00E9 -> E9 00 in UTF-16LE, so it must differ from the raw byte form.
	a := NTPasswordHash([]byte("caf\u00e9"))
	b := NTPasswordHash([]byte("caf\xc3\xa9x"))
	if a == b {
		t.Error("unexpected equal hashes")
	}
	// Astral characters become surrogate pairs; just make sure it is stable.
	if NTPasswordHash([]byte("\U0001F600")) != NTPasswordHash([]byte("\U0001F600")) {
		t.Error("unstable")
	}
}

func FuzzParseMessages(f *testing.F) {
	f.Add([]byte("S=F9C4308DA512A2B357738E99A9786BAACDC1DBC0 M=Access granted"))
	f.Add([]byte("E=691 R=1 C=0102030405060708090A0B0C0D0E0F10 V=0 M=Access denied"))
	f.Add([]byte("S=BBA80E10ECB626650DCC9A49BEF30D88A8EACD43"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseSuccess(b)
		ParseFailure(b)
		ParseResponseValue(b)
	})
}
