//go:build interop

package main

import (
	"context"
	be "encoding/binary"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
)

// TestInteropProxyAuth: with --proxy-user/--proxy-password, both proxies
// refuse a wrong password and carry the right one's traffic to the
// VPN-only target; SOCKS5 UDP ASSOCIATE reaches the harness's UDP echo
// through the VPN, by address and by the name only the VPN's DNS knows.
func TestInteropProxyAuth(t *testing.T) {
	p := loadPeer(t)
	if p["UDP_ECHO"] == "" {
		t.Fatal("the harness gives no UDP_ECHO")
	}
	const pw = "interop-proxy-pw-QwE"
	socks, httpAddr := freePort(t), freePort(t)
	pc := start(t, p, func(env map[string]string) {
		env["L2TPPROXY_PROXY_USER"] = "alice"
		env["L2TPPROXY_PROXY_PASSWORD"] = pw
	}, "--socks5", socks, "--http", httpAddr)
	pc.waitFor(t, regexp.MustCompile(`HTTP proxy listening`), 90*time.Second)
	hello := strings.Replace(p["HELLO_URL"], p["TARGET_IP"], p["TARGET_NAME"], 1)

	for _, scheme := range []string{"socks5h", "http"} {
		addr := socks
		if scheme == "http" {
			addr = httpAddr
		}
		for _, tc := range []struct {
			user *url.Userinfo
			ok   bool
		}{{url.UserPassword("alice", "wrong"), false}, {nil, false}, {url.UserPassword("alice", pw), true}} {
			pu := &url.URL{Scheme: scheme, Host: addr, User: tc.user}
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 30 * time.Second}
			resp, err := hc.Get(hello)
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if ok != tc.ok {
				t.Errorf("%s with %v: ok=%v (%v), want %v", scheme, tc.user, ok, err, tc.ok)
			}
			if scheme == "http" && !tc.ok && err == nil && resp.StatusCode != http.StatusProxyAuthRequired {
				t.Errorf("http with %v: status %d, want 407", tc.user, resp.StatusCode)
			}
		}
	}
	t.Logf("PROXY_AUTH %s both proxies: wrong/no password refused, right one accepted", p.label())

	host, portS, _ := net.SplitHostPort(p["UDP_ECHO"])
	port := mustAtoi(t, portS)
	ctrl, relay := udpAssociate(t, socks, "alice", pw)
	defer ctrl.Close()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	ip4 := net.ParseIP(host).To4()
	byAddr := be.BigEndian.AppendUint16(append([]byte{0, 0, 0, 1}, ip4...), uint16(port))
	byName := be.BigEndian.AppendUint16(append([]byte{0, 0, 0, 3, byte(len(p["TARGET_NAME"]))}, p["TARGET_NAME"]...), uint16(port))
	for name, hdr := range map[string][]byte{"address": byAddr, "name": byName} {
		payload := "l2tpproxy interop UDP via " + name
		// UDP may lose a datagram: up to 3 tries, 3 s each.
		var got string
		var rtt time.Duration
		for try := 0; try < 3 && got != payload; try++ {
			sent := time.Now()
			if _, err := uc.WriteToUDP(append(append([]byte(nil), hdr...), payload...), relay); err != nil {
				t.Fatal(err)
			}
			uc.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 2048)
			n, _, err := uc.ReadFromUDP(buf)
			if err != nil {
				continue
			}
			rtt = time.Since(sent)
			h, data, err := proxy.ParseUDPDatagram(buf[:n])
			if err != nil || h.Host != host || int(h.Port) != port {
				t.Errorf("UDP by %s: reply header %+v %v", name, h, err)
			}
			got = string(data)
		}
		if got != payload {
			t.Errorf("UDP by %s: no echo of %q (got %q)\n%s", name, payload, got, pc.output())
		} else {
			t.Logf("SOCKS5_UDP %s by %s: echo from %s in %v", p.label(), name, p["UDP_ECHO"], rtt.Round(time.Microsecond))
		}
	}
	if strings.Contains(pc.output(), pw) {
		t.Error("the proxy password appears in the log")
	}
}

// TestInteropBrowserPAC: a real headless Chromium, configured only with
// --proxy-pac-url pointing at our /proxy.pac, loads the page that exists
// only behind the VPN, by name. The routes are split (--domain for the
// target's name, --route for its address, others direct), so the PAC file
// is what sends the browser to the proxy.
func TestInteropBrowserPAC(t *testing.T) {
	p := loadPeer(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (apt-get install -y --no-install-recommends chromium; .ci/run does)")
	}
	httpAddr := freePort(t)
	pc := start(t, p, nil, "--socks5", "", "--http", httpAddr,
		"--domain", p["TARGET_NAME"], "--route", p["TARGET_IP"]+"/32", "--others", "direct", "--log-level", "debug")
	pc.waitFor(t, regexp.MustCompile(`HTTP proxy listening`), 90*time.Second)

	// What the page says, fetched through the proxy directly.
	hello := strings.Replace(p["HELLO_URL"], p["TARGET_IP"], p["TARGET_NAME"], 1)
	pu, _ := url.Parse("http://" + httpAddr)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 30 * time.Second}
	resp, err := hc.Get(hello)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	cmd := exec.CommandContext(ctx, chromium, chromiumArgs(dir, "http://"+httpAddr+"/proxy.pac", hello)...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	text := html.UnescapeString(string(dom))
	if !strings.Contains(text, strings.TrimSpace(string(want))) {
		t.Fatalf("chromium's page lacks %q:\n%s\nchromium stderr:\n%s\nproxy log:\n%s", want, dom, stderr.String(), pc.output())
	}
	if !strings.Contains(pc.output(), "serving /proxy.pac") {
		t.Errorf("the browser never fetched /proxy.pac:\n%s", pc.output())
	}
	t.Logf("BROWSER_PAC %s chromium loaded %s through the PAC file in %v", p.label(), hello, time.Since(began).Round(time.Millisecond))
}

func mustAtoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a port: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
