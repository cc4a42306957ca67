package ppp

import (
	"bytes"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

func isAuthUp(e Event) bool { _, ok := e.(AuthUp); return ok }

// TestAuthPolicyMatrix: a server that requires exactly one method (pppd
// require-X: it re-asks for it after our Nak, or ends the link as pppd does)
// against every client policy. The client authenticates exactly when its
// policy allows the method, and otherwise fails at once (no timeout: the
// clock never moves) with an error naming the server's method.
func TestAuthPolicyMatrix(t *testing.T) {
	methods := []AuthMethod{AuthPAP, AuthCHAPMD5, AuthMSCHAPv2, AuthEAPMD5, AuthEAPMSCHAPv2}
	policies := []string{"", "pap", "chap", "mschapv2", "eap", "pap,chap,mschapv2,eap", "chap,pap"}
	for _, m := range methods {
		for _, ps := range policies {
			for _, terminate := range []bool{false, true} {
				name := m.String() + "/" + ps
				if ps == "" {
					name = m.String() + "/default"
				}
				if terminate {
					name += "/terminate"
				}
				t.Run(name, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						cc, sc := baseConfigs(clock.Real)
						if ps != "" {
							p, err := ParseAuthPolicy(ps)
							if err != nil {
								t.Fatal(err)
							}
							cc.Auth = p
						}
						sc.Auth, sc.Accept, sc.TerminateOnNak = m, []AuthMethod{m}, terminate
						w := &wire{}
						ss := start(t, cc, sc, w)
						if cc.Auth.withDefault().Allows(m) {
							ss.waitUp(0)
							for _, server := range []bool{false, true} {
								if a, _ := ss.event(server, isAuthUp).(AuthUp); a.Method != m || a.User != "vpnuser" {
									t.Errorf("server=%v AuthUp %+v, want %v", server, a, m)
								}
							}
							if naks := authNaks(w); len(naks) != 0 {
								t.Errorf("Naks %x for an allowed method", naks)
							}
							return
						}
						err := waitErr(t, 0, ss.cErr)
						re := AsAuthRefused(err)
						if re == nil || !errIs(err, ErrAuthRejected) {
							t.Fatalf("client: %v, want an AuthRefusedError", err)
						}
						wantName := m.String()
						if policyBit(m) == AllowEAP {
							wantName = "EAP" // refused at the LCP level, before the method inside is known
						}
						if re.Name != wantName || re.Method.PolicyName() != m.PolicyName() {
							t.Errorf("refused %+v, want %s (%s)", re, wantName, m.PolicyName())
						}
						if !strings.Contains(err.Error(), "the server requires "+wantName+", which the authentication policy does not allow") {
							t.Errorf("message %q", err)
						}
					})
				})
			}
		}
	}
}

func (p AuthPolicy) withDefault() AuthPolicy {
	if p == 0 {
		return DefaultAuthPolicy
	}
	return p
}

func TestParseAuthPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AuthPolicy
		str  string
	}{
		{"pap", AllowPAP, "pap"},
		{"PAP, chap", AllowPAP | AllowCHAP, "chap,pap"},
		{"eap,mschapv2,chap,pap", allowAll, "mschapv2,eap,chap,pap"},
		{"mschapv2,eap,chap", DefaultAuthPolicy, "mschapv2,eap,chap"},
	} {
		got, err := ParseAuthPolicy(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("%q: %v %v %q", tc.in, got, err, got.String())
		}
	}
	for _, bad := range []string{"", "pap,", "md5", "mschap", "pap,,chap"} {
		if _, err := ParseAuthPolicy(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if DefaultAuthPolicy.Allows(AuthPAP) || !DefaultAuthPolicy.Allows(AuthEAPMD5) || AllowPAP.Allows(AuthNone) {
		t.Error("Allows")
	}
}

// An EAP server that offers only EAP-TLS and falls back by renegotiating
// LCP with MS-CHAPv2 after our EAP Nak (what SoftEther's code intends; its
// 5.01 build never starts MS-CHAPv2 after that, see Client.softEtherEAP):
// LCP EAP accepted, Identity answered with the user name, EAP-TLS
// Legacy-Naked toward EAP-MSCHAPv2 and EAP-MD5, then LCP again (after the
// server Protocol-Rejects our Nak) and MS-CHAPv2.
func TestEAPFallbackByLCPRenegotiation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := baseConfigs(clock.Real)
		sc.EAPFirst = true
		sc.Accept = []AuthMethod{AuthMSCHAPv2, AuthPAP}
		w := &wire{}
		ss := start(t, cc, sc, w)
		ss.waitUp(0)
		var resp [][]byte
		for _, p := range w.frames(0, protoEAP) {
			if p.code == eapResponse {
				resp = append(resp, p.data)
			}
		}
		if len(resp) != 2 || !bytes.Equal(resp[0], []byte("\x01vpnuser")) || !bytes.Equal(resp[1], []byte{eapTypeNak, eapTypeMSCHAPv2, eapTypeMD5}) {
			t.Errorf("EAP responses %q, want Identity and Nak", resp)
		}
		if a, _ := ss.event(false, isAuthUp).(AuthUp); a.Method != AuthMSCHAPv2 {
			t.Errorf("AuthUp %+v", a)
		}
	})
}

// An EAP server whose only method we do not implement (EAP-TLS, then
// EAP-Failure) gives a refusal that names it, not a password error.
func TestEAPUnsupportedMethod(t *testing.T) {
	clk := newFake()
	cc, _ := baseConfigs(clk)
	ca := newClientAlone(t, cc)
	req := ca.next(t, protoLCP)
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfAck, req.id, req.data))
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfReq, 7, []byte{lcpOptAuth, 4, 0xc2, 0x27, lcpOptMagic, 6, 1, 2, 3, 4}))
	if a := ca.next(t, protoLCP); a.code != codeConfAck {
		t.Fatalf("EAP not acked: %d %x", a.code, a.data)
	}
	ca.c.HandleFrame(appendPacket(nil, protoEAP, eapRequest, 1, []byte{eapTypeIdentity}))
	if r := ca.next(t, protoEAP); r.code != eapResponse || r.id != 1 || string(r.data) != "\x01vpnuser" {
		t.Fatalf("identity %d %x", r.code, r.data)
	}
	ca.c.HandleFrame(appendPacket(nil, protoEAP, eapRequest, 2, []byte{eapTypeTLS, 0x20}))
	nak := ca.next(t, protoEAP)
	if nak.id != 2 || !bytes.Equal(nak.data, []byte{3, 26, 4}) {
		t.Fatalf("nak %x", nak.data)
	}
	// A duplicate Request gets the identical Response (RFC 3748 §4.1).
	ca.c.HandleFrame(appendPacket(nil, protoEAP, eapRequest, 2, []byte{eapTypeTLS, 0x20}))
	if again := ca.next(t, protoEAP); again.id != 2 || !bytes.Equal(again.data, nak.data) {
		t.Fatalf("duplicate answered %x", again.data)
	}
	ca.c.HandleFrame(appendPacket(nil, protoEAP, eapFailure, 2))
	err := <-ca.errc
	if re := AsAuthRefused(err); re == nil || re.Name != "EAP-TLS" || re.Method != AuthNone || !strings.Contains(err.Error(), "not implemented") {
		t.Fatalf("got %v", err)
	}
}

// SoftEther-style request (Auth-Protocol EAP alone): Naked once toward
// MS-CHAPv2; asked again, EAP is accepted. Without MS-CHAPv2 in the policy
// it is accepted at once.
func TestSoftEtherStyleEAPRequest(t *testing.T) {
	eapOnly := []byte{lcpOptAuth, 4, 0xc2, 0x27}
	clk := newFake()
	cc, _ := baseConfigs(clk)
	ca := newClientAlone(t, cc)
	ca.next(t, protoLCP)
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfReq, 1, eapOnly))
	if r := ca.next(t, protoLCP); r.code != codeConfNak || !bytes.Equal(r.data, []byte{3, 5, 0xc2, 0x23, 0x81}) {
		t.Fatalf("first: %d %x", r.code, r.data)
	}
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfReq, 2, eapOnly))
	if r := ca.next(t, protoLCP); r.code != codeConfAck {
		t.Fatalf("second: %d %x", r.code, r.data)
	}

	cc.Auth = AllowEAP | AllowCHAP
	ca = newClientAlone(t, cc)
	ca.next(t, protoLCP)
	ca.c.HandleFrame(appendPacket(nil, protoLCP, codeConfReq, 1, eapOnly))
	if r := ca.next(t, protoLCP); r.code != codeConfAck {
		t.Fatalf("without mschapv2: %d %x", r.code, r.data)
	}
}
