//go:build interop

// Interop tests of `exec` and `check` against the real servers of
// testdata/interop (see interop_test.go for how they are run).
package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runBinary runs the binary (as uid 65534 when we are root) with the peer's
// settings and returns its exit code, stdout and stderr, within timeout.
func runBinary(t *testing.T, p peer, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	return runWith(t, p, nil, timeout, args...)
}

// runWith is runBinary with the peer's settings edited by edit first.
func runWith(t *testing.T, p peer, edit func(map[string]string), timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	cmd := command(t, p, edit, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v still running after %v\nstderr:\n%s", args, timeout, stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{p["PSK"], p["VPN_PASSWORD"]} {
		if strings.Contains(stdout.String()+stderr.String(), secret) {
			t.Fatalf("a secret appears in the output of %v", args)
		}
	}
	return code, stdout.String(), stderr.String()
}

// helloBody is the body HELLO_URL serves, if the harness says.
func helloBody(p peer) string { return strings.Trim(p["HELLO_BODY"], `'"`) }

// TestInteropExec: `exec -- sh -c 'curl ...'` as an unprivileged user, as
// a CI step would: the VPN-only target is unreachable directly, reachable by
// name through http_proxy and through all_proxy (socks5h), and exec exits
// with the script's code.
func TestInteropExec(t *testing.T) {
	p := loadPeer(t)
	byName := strings.Replace(p["HELLO_URL"], p["TARGET_IP"], p["TARGET_NAME"], 1)
	// Without the proxies the target must be unreachable. Only where the
	// harness routes it to "unreachable" on this host (SoftEther): the VM
	// servers' target exists only inside the VM, and a direct try would
	// go out of this machine by its default route.
	probe := "0"
	if p["SERVER_KIND"] == "softether" {
		probe = "1"
	}
	script := `set -e
if [ "$3" = 1 ] && curl -fsS --noproxy '*' --max-time 3 "$1" >/dev/null 2>&1; then echo "reached $1 without the VPN" >&2; exit 99; fi
curl -fsS --max-time 30 "$2"
env -u http_proxy -u HTTP_PROXY curl -fsS --max-time 30 "$2"
exit 7`
	began := time.Now()
	code, out, errOut := runBinary(t, p, 120*time.Second, "exec", "--log-level", "info", "--", "sh", "-c", script, "sh", p["HELLO_URL"], byName, probe)
	t.Logf("EXEC %s: exit %d after %v (connect, two fetches, teardown)", p.label(), code, time.Since(began).Round(time.Millisecond))
	if code != 7 {
		t.Fatalf("exit code %d, want the script's 7\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := helloBody(p)
	if want == "" {
		want = strings.SplitN(out, "\n", 2)[0]
	}
	if got := strings.Count(out, want); want == "" || got != 2 {
		t.Errorf("stdout %q: want the hello body (%q) twice, once per proxy", out, want)
	}
	for _, line := range []string{"tunnel up", "running the command", "the command exited: tearing down"} {
		if !strings.Contains(errOut, line) {
			t.Errorf("stderr lacks %q:\n%s", line, errOut)
		}
	}
}

// TestInteropCheck: `check --json` reports what the server is configured to
// negotiate (the harness's settings), a time for each layer and a DNS round
// trip through the tunnel.
func TestInteropCheck(t *testing.T) {
	p := loadPeer(t)
	code, out, errOut := runBinary(t, p, 90*time.Second, "check", "--json")
	if code == exitIKE && strings.Contains(out, "not established in time") {
		// Seen twice against SoftEther in one CI run (2026-12-01) and never
		// when reproduced by hand: it answered MM1 and never MM3. Logged as
		// CHECK_RETRY (in the summary) so that it stays visible, then
		// retried once: what is checked here is the report.
		t.Logf("CHECK_RETRY %s: first check failed: %s", p.label(), strings.TrimSpace(out))
		code, out, errOut = runBinary(t, p, 90*time.Second, "check", "--json")
	}
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Logf("CHECK %s %s", p.label(), strings.TrimSpace(out))
	var r struct {
		OK          bool               `json:"ok"`
		IKESuite    string             `json:"ike_suite"`
		ESPSuite    string             `json:"esp_suite"`
		PFS         string             `json:"pfs"`
		L2TPPeer    string             `json:"l2tp_peer"`
		PPPAuth     string             `json:"ppp_auth"`
		Address     string             `json:"address"`
		PeerAddress string             `json:"peer_address"`
		DNS         []string           `json:"dns"`
		MTU         int                `json:"mtu"`
		Times       map[string]float64 `json:"times_ms"`
		RTT         struct {
			Target   string  `json:"target"`
			Sent     int     `json:"sent"`
			Answered int     `json:"answered"`
			MedianMS float64 `json:"median_ms"`
			Error    string  `json:"error"`
		} `json:"rtt"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %q", err, out)
	}

	// What each harness server is set up to choose from our default
	// proposals (see testdata/interop/*/ and the README's interop tables):
	// SoftEther takes the first transform it accepts, the Linux servers
	// their own preference; a variant names its groups (IKE_GROUP,
	// PFS_GROUP) and the PPP method it requires (PPP_METHOD).
	kind, mode := p["SERVER_KIND"], p["MODE"]
	wantIKE := map[string]string{"softether": "AES-CBC-256/HMAC-SHA2-512/", "libreswan": "AES-CBC-256/HMAC-SHA2-256/", "strongswan": "AES-CBC-256/HMAC-SHA2-256/"}[kind] + or(p["IKE_GROUP"], "MODP2048")
	wantESP := map[string]string{"softether": "AES-CBC-128/HMAC-SHA1-96", "libreswan": "AES-GCM-128", "strongswan": "AES-CBC-128/HMAC-SHA1-96"}[kind]
	if mode == "ecp" || mode == "modp3072" {
		wantESP = "AES-GCM-128" // those servers' ESP proposals put GCM first
	}
	wantPFS := "none"
	if p["PFS"] == "yes" {
		wantPFS = or(p["PFS_GROUP"], "MODP2048")
	}
	wantAuth := or(p["PPP_METHOD"], map[string]string{"": "MS-CHAPv2", "mschapv2": "MS-CHAPv2"}[p["AUTH"]])
	known := wantESP != "" && wantAuth != ""
	wantDNS := p["DNS_SERVER"] + p["VPN_DNS"]
	checks := []struct{ field, got, want string }{
		{"dns", strings.Join(r.DNS, ","), wantDNS},
		{"rtt.target", r.RTT.Target, wantDNS + ":53"},
	}
	if known {
		checks = append(checks, []struct{ field, got, want string }{
			{"ike_suite", r.IKESuite, wantIKE},
			{"esp_suite", r.ESPSuite, wantESP},
			{"pfs", r.PFS, wantPFS},
			{"ppp_auth", r.PPPAuth, wantAuth},
		}...)
	} else {
		t.Logf("variant %s: no known suites, checking that they are reported", p.label())
		if r.IKESuite == "" || r.ESPSuite == "" || r.PFS == "" || r.PPPAuth == "" {
			t.Errorf("suites missing: %+v", r)
		}
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if local := p["PPP_LOCAL"]; local != "" && r.PeerAddress != local {
		t.Errorf("peer_address = %q, want the server's PPP address %s", r.PeerAddress, local)
	}
	if pool := p["VPN_POOL"]; pool != "" {
		lo, hi, _ := strings.Cut(pool, "-")
		a, err := netip.ParseAddr(r.Address)
		if err != nil || a.Less(netip.MustParseAddr(lo)) || netip.MustParseAddr(hi).Less(a) {
			t.Errorf("address = %q, want one of the pool %s", r.Address, pool)
		}
	} else if _, err := netip.ParseAddr(r.Address); err != nil {
		t.Errorf("address = %q", r.Address)
	}
	if !r.OK || r.L2TPPeer == "" || r.MTU < 576 || r.MTU > 1500 {
		t.Errorf("ok %v, l2tp_peer %q, mtu %d", r.OK, r.L2TPPeer, r.MTU)
	}
	for _, k := range []string{"ike_phase1", "quick_mode", "l2tp", "ppp_lcp", "ppp_auth", "ipcp", "total"} {
		if r.Times[k] <= 0 {
			t.Errorf("times_ms.%s = %v, want > 0", k, r.Times[k])
		}
	}
	if r.RTT.Answered == 0 || r.RTT.MedianMS <= 0 {
		t.Errorf("no DNS round trip through the tunnel: %+v", r.RTT)
	}

	// The text form says the same, one line per item.
	code, out, errOut = runBinary(t, p, 90*time.Second, "check")
	if code != 0 || !strings.Contains(out, "IPsec SA    "+r.ESPSuite+", PFS "+r.PFS+"\n") || !strings.Contains(out, "PPP auth    "+r.PPPAuth+"\n") {
		t.Errorf("check: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("CHECK_TEXT %s\n%s", p.label(), out)
}

// or returns v, or def when v is empty.
func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
