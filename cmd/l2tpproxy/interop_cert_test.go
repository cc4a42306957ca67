//go:build interop

// Interop test of certificate authentication against the certificate-only
// strongSwan of testdata/interop (strongswan:cert).
package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/ike/certtest"
)

// TestInteropCert: against a server that accepts only RSA signatures, the
// handshake uses IKE fragments both ways (the 4096-bit certificates make MM5
// and MM6 larger than the fragment sizes), and a wrong --remote-id or a
// foreign --ca each fail in phase 1 with exit 4 and a hint naming the flag.
func TestInteropCert(t *testing.T) {
	p := loadPeer(t)
	if p["MODE"] != "cert" {
		t.Skip("not a certificate variant")
	}
	code, out, errOut := runWith(t, p, nil, 90*time.Second, "check", "--log-level", "debug")
	if code == exitL2TP {
		// Seen once (2026-12-02) as the first connection after the VM's
		// self-check: IKE and the IPsec SA up, the first SCCRQs unanswered
		// for 8 s. Logged (in the summary) and retried once: what is
		// checked here is phase 1.
		t.Logf("CHECK_RETRY %s: first check failed: %s", p.label(), lastLine(errOut))
		code, out, errOut = runWith(t, p, nil, 90*time.Second, "check", "--log-level", "debug")
	}
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	sent := regexp.MustCompile(`sending a message in fragments.* bytes=(\d+) fragments=(\d+)`).FindStringSubmatch(errOut)
	got := regexp.MustCompile(`reassembled a fragmented message.* bytes=(\d+)`).FindStringSubmatch(errOut)
	if sent == nil || got == nil {
		t.Errorf("no IKE fragments both ways in the debug log:\n%s", errOut)
	} else {
		t.Logf("IKE_FRAGMENTS %s: sent MM5 of %s bytes in %s fragments, reassembled MM6 of %s bytes", p.label(), sent[1], sent[2], got[1])
	}
	if !regexp.MustCompile(`phase 1 up.* peer_id_type=9`).MatchString(errOut) {
		t.Errorf("the server's ID is not a DN (ID_DER_ASN1_DN):\n%s", errOut)
	}

	// Another CA's bundle, readable by the unprivileged client.
	dir, err := os.MkdirTemp("", "l2tpproxy-ca")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCA, certtest.NewCA("not the server's CA", 0).CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]string)
		want *regexp.Regexp
	}{
		{"wrong remote-id", func(e map[string]string) { e["L2TPPROXY_REMOTE_ID"] = "C=CH,O=l2tpproxy-interop,CN=someone-else" }, regexp.MustCompile(`server identity mismatch.*--remote-id`)},
		{"no remote-id, server name 127.0.0.1", func(e map[string]string) { delete(e, "L2TPPROXY_REMOTE_ID") }, regexp.MustCompile(`not valid for the server name "127.0.0.1".*--remote-id`)},
		{"foreign CA", func(e map[string]string) { e["L2TPPROXY_CA"] = otherCA }, regexp.MustCompile(`not trusted.*unknown authority.*--ca`)},
		// Only certificates: the same client with a PSK instead is refused
		// in phase 1 (the server holds no PSK).
		{"psk instead", func(e map[string]string) {
			for _, k := range []string{"L2TPPROXY_CERT", "L2TPPROXY_KEY", "L2TPPROXY_CA", "L2TPPROXY_REMOTE_ID"} {
				delete(e, k)
			}
			e["L2TPPROXY_PSK"] = p["PSK"]
		}, regexp.MustCompile(`IKE: `)}, // 2026-12-02: strongSwan let phase 1 run into our 30 s connect timeout (not yet understood); Libreswan does not answer MM1 (exit 3)
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, _, errOut := runWith(t, p, tc.edit, 60*time.Second, "check")
			line := lastLine(errOut)
			okCode := code == exitIKE || tc.name == "psk instead" && code == exitUnreachable
			if !okCode || !tc.want.MatchString(line) || strings.Contains(strings.TrimSpace(errOut), "\n") && tc.name != "psk instead" {
				t.Fatalf("exit %d, stderr %q; want %d and %s on one line", code, line, exitIKE, tc.want)
			}
			t.Logf("CERT_ERROR %s %s in %v: %s", p.label(), tc.name, time.Since(start).Round(time.Millisecond), line)
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
