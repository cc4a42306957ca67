package main

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike/certtest"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestCheckWithCertificates: `check --cert --key --ca` against the test
// server authenticating with RSA signatures: exit 0; the wrong CA exits 4
// naming --ca; --cert alone is a configuration error (exit 2).
func TestCheckWithCertificates(t *testing.T) {
	ca := certtest.NewCA("l2tpproxy test CA", 0)
	other := certtest.NewCA("some other CA", 1)
	srvID := ca.Issue("vpn.example.test", 2, 0, []string{"vpn.example.test"}, net.ParseIP("127.0.0.1"))
	cliID := ca.Issue("client", 3, 0, nil)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certF, keyF := write("client.pem", cliID.CertPEM()), write("client.key", cliID.KeyPEM())
	caF, otherF := write("ca.pem", ca.CertPEM()), write("other.pem", other.CertPEM())
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		text  string
	}{
		{"ok", []string{"--cert", certF, "--key", keyF, "--ca", caF}, 0, ""},
		{"wrong CA", []string{"--cert", certF, "--key", keyF, "--ca", otherF}, 4, "--ca"},
		{"wrong remote-id", []string{"--cert", certF, "--key", keyF, "--ca", caF, "--remote-id", "C=CH, CN=gw"}, 4, "--remote-id"},
		{"cert without key", []string{"--cert", certF, "--ca", caF}, 2, "--cert, --key and --ca together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, testserver.Config{Cert: &ike.Certificates{Chain: []*x509.Certificate{srvID.Cert}, Key: srvID.Key, CAs: []*x509.Certificate{ca.Cert}}})
			args := append(append([]string{"l2tpproxy", "check"}, serverFlags(t, srv)...), tc.flags...)
			t.Setenv("L2TPPROXY_PSK", "")
			var code int
			stderr := captureStderr(t, func() { code = run(args) })
			if code != tc.code || !strings.Contains(stderr, tc.text) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.text)
			}
			t.Logf("stderr: %s", stderr)
			if tc.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("want one line: %q", stderr)
			}
		})
	}
}
