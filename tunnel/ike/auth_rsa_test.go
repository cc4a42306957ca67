package ike

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/ikev1"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike/certtest"
)

// testPKI: a CA, the server's certificate (vpn.example.test and the
// server's address), the client's; and a second CA that issued neither.
type testPKI struct {
	ca, otherCA, server, client, stranger certtest.Identity
}

func newTestPKI(serverBits int) testPKI {
	ca := certtest.NewCA("l2tpproxy test CA", 0)
	other := certtest.NewCA("some other CA", 1)
	return testPKI{
		ca: ca, otherCA: other,
		server:   ca.Issue("vpn.example.test", 2, serverBits, []string{"vpn.example.test"}, net.ParseIP(serverAddr.Addr().String())),
		client:   ca.Issue("client", 3, 0, nil),
		stranger: other.Issue("client", 4, 0, nil),
	}
}

func (p testPKI) clientCerts(serverName string) *Certificates {
	return &Certificates{Chain: certs(p.client.Cert), Key: p.client.Key, CAs: certs(p.ca.Cert), ServerName: serverName}
}

func (p testPKI) serverCerts() *Certificates {
	return &Certificates{Chain: certs(p.server.Cert), Key: p.server.Key, CAs: certs(p.ca.Cert)}
}

func TestCertHappyPath(t *testing.T) {
	pki := newTestPKI(0)
	for _, tc := range []struct{ name, server, remoteID string }{
		{"server name", "vpn.example.test", ""},
		{"server address", serverAddr.Addr().String(), ""},
		{"remote-id DN strongSwan order", "192.0.2.99", "C=CH, O=l2tpproxy test, CN=vpn.example.test"},
		{"remote-id DN RFC 4514 order", "192.0.2.99", "CN=vpn.example.test,O=l2tpproxy test,C=CH"},
		{"remote-id FQDN", "192.0.2.99", "vpn.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPair(t, Config{Cert: pki.clientCerts(tc.server), CertRemoteID: tc.remoteID}, ResponderConfig{Cert: pki.serverCerts()})
				p.start(t)
				ic := waitEvent[ChildSAUp](t, p, p.ini.Events(), false).Child
				rc := waitEvent[ChildSAUp](t, p, p.resp.Events(), false).Child
				checkKeysMatch(t, ic, rc)
				msgs, _ := p.toResp.messages()
				mm1, err := Parse(msgs[0])
				if err != nil {
					t.Fatal(err)
				}
				sa, err := ParseSA(First(mm1.Payloads, PayloadSA).Body)
				if err != nil {
					t.Fatal(err)
				}
				for _, tr := range sa.Proposals[0].Transforms {
					if m, _ := tr.Attr(attrAuth); m != authRSASig {
						t.Fatalf("MM1 offers auth method %d, want RSA signatures (3)", m)
					}
				}
				if !hasFragmentationVID(mm1.Payloads) {
					t.Error("MM1 does not announce fragmentation")
				}
				mm3, _ := Parse(msgs[1])
				cr := First(mm3.Payloads, PayloadCertReq)
				if cr == nil || cr.Body[0] != certX509Sig || !bytes.Equal(cr.Body[1:], pki.ca.Cert.RawSubject) {
					t.Errorf("MM3 has no CERTREQ naming our CA: %v", cr)
				}
			})
		})
	}
}

func TestCertFailures(t *testing.T) {
	pki := newTestPKI(0)
	for _, tc := range []struct {
		name     string
		icert    *Certificates
		remoteID string
		want     error
		text     string
	}{
		{"wrong CA", &Certificates{Chain: certs(pki.client.Cert), Key: pki.client.Key, CAs: certs(pki.otherCA.Cert), ServerName: "vpn.example.test"}, "", ErrCertUntrusted, "unknown authority"},
		{"wrong server name", pki.clientCerts("vpn.other.test"), "", ErrIdentityMismatch, `not valid for the server name "vpn.other.test"`},
		{"wrong remote-id FQDN", pki.clientCerts("vpn.example.test"), "gw.example.test", ErrIdentityMismatch, `--remote-id "gw.example.test"`},
		{"wrong remote-id DN", pki.clientCerts("vpn.example.test"), "C=CH, O=l2tpproxy test, CN=gw", ErrIdentityMismatch, "subject"},
		{"wrong remote-id address", pki.clientCerts("vpn.example.test"), "198.51.100.1", ErrIdentityMismatch, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPair(t, Config{Cert: tc.icert, CertRemoteID: tc.remoteID}, ResponderConfig{Cert: pki.serverCerts()})
				p.start(t)
				err := waitErr(t, p.iErr, true)
				if !errors.Is(err, tc.want) || !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
				}
			})
		})
	}
}

// A client whose certificate the server's CA did not issue: the server
// refuses MM5 and the client reports that its certificate was refused.
func TestCertClientRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pki := newTestPKI(0)
		icert := &Certificates{Chain: certs(pki.stranger.Cert), Key: pki.stranger.Key, CAs: certs(pki.ca.Cert), ServerName: "vpn.example.test"}
		p := newPair(t, Config{Cert: icert}, ResponderConfig{Cert: pki.serverCerts()})
		p.start(t)
		if err := waitErr(t, p.rErr, true); !errors.Is(err, ErrCertUntrusted) {
			t.Fatalf("responder: %v", err)
		}
		if err := waitErr(t, p.iErr, true); !errors.Is(err, ErrCertRejected) || !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("initiator: %v", err)
		}
	})
}

// The signature is over HASH_I/HASH_R without DigestInfo; one flipped bit
// of what was signed, or of the signature, fails with ErrBadSignature.
func TestCertSignature(t *testing.T) {
	pki := newTestPKI(0)
	srv, err := newRSAAuth(pki.serverCerts(), "", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := newRSAAuth(pki.clientCerts("vpn.example.test"), "", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ikev1.NewSuite(ikev1.HashSHA256)
	pr := phase1Proof{suite: s, skeyid: srv.SKEYID(s, []byte("nonce-i"), []byte("nonce-r"), []byte("gxy")),
		gxi: []byte("gxi"), gxr: []byte("gxr"), ckyI: make([]byte, 8), ckyR: make([]byte, 8), saiB: []byte("sa")}
	id := srv.localID()
	pt, sig := srv.Proof(pr, false, id)
	if pt != PayloadSig || len(sig) != 256 {
		t.Fatalf("proof type %d, %d bytes", pt, len(sig))
	}
	// SKEYID for signatures is prf(Ni_b | Nr_b, g^xy) (RFC 2409 §5).
	if !bytes.Equal(pr.skeyid, s.PRF([]byte("nonce-inonce-r"), []byte("gxy"))) {
		t.Fatal("SKEYID")
	}
	payloads := func(sig []byte) []Payload {
		return []Payload{{Type: PayloadCert, Body: srv.certPayloads()[0]}, {Type: PayloadSig, Body: sig}}
	}
	if err := cli.Verify(pr, false, id, payloads(sig)); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	bad := append([]byte(nil), sig...)
	bad[10] ^= 1
	if err := cli.Verify(pr, false, id, payloads(bad)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("flipped signature: %v", err)
	}
	pr2 := pr
	pr2.saiB = []byte("SA")
	if err := cli.Verify(pr2, false, id, payloads(sig)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other SA: %v", err)
	}
	// The signature is PKCS#1 v1.5 type 1 over the raw hash: decrypting it
	// with the public exponent gives 00 01 FF.. 00 HASH_R, no DigestInfo.
	e := new(bigInt).SetBytes(sig)
	m := e.Exp(e, bigIntFrom(pki.server.Key.PublicKey.E), pki.server.Key.PublicKey.N).FillBytes(make([]byte, 256))
	want := pr.suite.HashR(pr.skeyid, pr.gxi, pr.gxr, pr.ckyI, pr.ckyR, pr.saiB, id)
	if m[0] != 0 || m[1] != 1 || m[255-len(want)] != 0 || !bytes.Equal(m[256-len(want):], want) {
		t.Fatalf("signature block %x", m)
	}
	// No CERT at all: untrusted.
	if err := cli.Verify(pr, false, id, []Payload{{Type: PayloadSig, Body: sig}}); !errors.Is(err, ErrCertUntrusted) {
		t.Fatalf("no CERT: %v", err)
	}
	// An ID that is not the certificate's: mismatch.
	other := ID{Type: IDFQDN, Data: []byte("evil.example.test")}.encode()
	if err := cli.Verify(pr, false, other, payloads(sig)); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("foreign ID: %v", err)
	}
}

func TestLoadCertificates(t *testing.T) {
	pki := newTestPKI(0)
	c, err := LoadCertificates(pki.client.CertPEM(), pki.client.KeyPEM(), pki.ca.CertPEM())
	if err != nil || len(c.Chain) != 1 || len(c.CAs) != 1 {
		t.Fatalf("%v %+v", err, c)
	}
	if _, err := LoadCertificates(pki.client.CertPEM(), pki.server.KeyPEM(), pki.ca.CertPEM()); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "not the private key") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := LoadCertificates(pki.client.CertPEM(), pki.client.KeyPEM(), []byte("junk")); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--ca") {
		t.Fatalf("bad CA: %v", err)
	}
	if strings.Contains(func() string {
		_, err := LoadCertificates(pki.client.CertPEM(), []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), pki.ca.CertPEM())
		return err.Error()
	}(), "AAAA") {
		t.Fatal("error quotes the key")
	}
}

func TestParseDN(t *testing.T) {
	for _, s := range []string{"C=CH, O=Org, CN=vpn", "CN=vpn,O=Org,C=CH", "/C=CH/O=Org/CN=vpn"} {
		p, err := parseDN(s)
		if err != nil || len(p) != 3 {
			t.Errorf("%q: %v %v", s, p, err)
		}
	}
	for _, s := range []string{"", "CN", "XX=1"} {
		if _, err := parseDN(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

type bigInt = big.Int

func bigIntFrom(v int) *big.Int { return big.NewInt(int64(v)) }

func certs(c ...*x509.Certificate) []*x509.Certificate { return c }

// FuzzCertVerify feeds arbitrary CERT, SIG and ID bodies to the
// certificate authenticator: errors, never a panic or a success.
func FuzzCertVerify(f *testing.F) {
	pki := newTestPKI(0)
	srv, _ := newRSAAuth(pki.serverCerts(), "", time.Now)
	f.Add(srv.certPayloads()[0], []byte{1, 2, 3}, srv.localID())
	f.Add([]byte{4, 0x30, 0x82, 0x01}, []byte{}, []byte{9, 0, 0, 0, 0x30, 0})
	cli, err := newRSAAuth(pki.clientCerts("vpn.example.test"), "", time.Now)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := ikev1.NewSuite(ikev1.HashSHA1)
	pr := phase1Proof{suite: s, skeyid: []byte("k"), gxi: []byte("i"), gxr: []byte("r"), ckyI: make([]byte, 8), ckyR: make([]byte, 8)}
	f.Fuzz(func(t *testing.T, cert, sig, id []byte) {
		ps := []Payload{{Type: PayloadCert, Body: cert}, {Type: PayloadSig, Body: sig}}
		if err := cli.Verify(pr, false, id, ps); err == nil {
			t.Fatal("verified")
		}
	})
}
