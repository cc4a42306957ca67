package main

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike/certtest"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// The PKCS#12 fixtures in testdata/p12 (made once with OpenSSL 3, valid
// until 2126): a CA (ca.pem, ca.key) and a client certificate it issued,
// exported with password p12TestPassword as client-3des.p12 (with the CA,
// 3DES/SHA-1 as Windows and macOS export), client-noca.p12 (without it) and
// client-aes.p12 (OpenSSL 3's default AES-256/PBES2).
const p12TestPassword = "p12-test-password"

func p12Fixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "p12", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fixtureCA is the fixture CA with its key, to issue the test server's
// certificate.
func fixtureCA(t *testing.T) certtest.Identity {
	t.Helper()
	readPEM := func(name string) []byte {
		b, err := os.ReadFile(p12Fixture(t, name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", name)
		}
		return blk.Bytes
	}
	cert, err := x509.ParseCertificate(readPEM("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS1PrivateKey(readPEM("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return certtest.Identity{Cert: cert, Key: key}
}

// TestCheckWithP12: `check --p12` against the test server authenticating
// with RSA signatures: the PKCS#12 file's CA is trusted without --ca, or
// --ca is used with a file that has none; the password comes from the
// environment or --p12-password-file. A wrong password, an AES-encrypted
// file, a file without CA and no --ca, and --p12 with --cert are
// configuration errors (exit 2) on one line without the password.
func TestCheckWithP12(t *testing.T) {
	ca := fixtureCA(t)
	srvID := ca.Issue("vpn.example.test", 2, 0, []string{"vpn.example.test"}, net.ParseIP("127.0.0.1"))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "p12.pw")
	if err := os.WriteFile(pwFile, []byte(p12TestPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, certtest.NewCA("some other CA", 1).CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	withCA, noCA, aes := p12Fixture(t, "client-3des.p12"), p12Fixture(t, "client-noca.p12"), p12Fixture(t, "client-aes.p12")
	for _, tc := range []struct {
		name  string
		pw    string // L2TPPROXY_P12_PASSWORD
		flags []string
		code  int
		text  string
	}{
		{"the p12's CA", p12TestPassword, []string{"--p12", withCA}, 0, ""},
		{"--ca and a password file", "", []string{"--p12", noCA, "--ca", p12Fixture(t, "ca.pem"), "--p12-password-file", pwFile}, 0, ""},
		{"--ca replaces the p12's CA", p12TestPassword, []string{"--p12", withCA, "--ca", other}, 4, "--ca"},
		{"wrong password", "wrong", []string{"--p12", withCA}, 2, "--p12: wrong password"},
		{"AES (PBES2)", p12TestPassword, []string{"--p12", aes}, 2, "re-export it"},
		{"no CA anywhere", p12TestPassword, []string{"--p12", noCA}, 2, "give the server's CA with --ca"},
		{"with --cert", p12TestPassword, []string{"--p12", withCA, "--cert", p12Fixture(t, "ca.pem")}, 2, "either --p12 or --cert"},
		{"password twice", p12TestPassword, []string{"--p12", withCA, "--p12-password-file", pwFile}, 2, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, testserver.Config{Cert: &ike.Certificates{Chain: []*x509.Certificate{srvID.Cert}, Key: srvID.Key, CAs: []*x509.Certificate{ca.Cert}}})
			args := append(append([]string{"l2tpproxy", "check"}, serverFlags(t, srv)...), tc.flags...)
			t.Setenv("L2TPPROXY_PSK", "")
			t.Setenv("L2TPPROXY_P12_PASSWORD", tc.pw)
			var code int
			stderr := captureStderr(t, func() { code = run(args) })
			if code != tc.code || !strings.Contains(stderr, tc.text) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.text)
			}
			if strings.Contains(stderr, "--ike-mode") {
				t.Errorf("a certificate error hints at Aggressive Mode (PSK only): %q", stderr)
			}
			if strings.Contains(stderr, p12TestPassword) {
				t.Errorf("the password is in the output: %q", stderr)
			}
			if tc.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("want one line: %q", stderr)
			}
			t.Logf("stderr: %s", stderr)
		})
	}
}
