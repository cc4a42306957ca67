//go:build interop

package main

import (
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// interopIPv6 runs against a VM variant that routes IPv6 over PPP
// (TARGET_IP6: pppd's IPv6CP, guest/ra.py's Router Advertisements with a
// /64 per PPP link out of PREFIX6, the target's HTTP on TARGET_IP6): the
// client makes a global address by SLAAC, and both proxies fetch from the
// IPv6 target by literal, the server seeing that address as the source.
func interopIPv6(t *testing.T, p peer, pc *proc, proxies map[string]*url.URL) {
	if p["TARGET_IP6"] == "" {
		return
	}
	t.Run("ipv6", func(t *testing.T) {
		prefix := netip.MustParsePrefix(p["PREFIX6"])
		re := regexp.MustCompile(`IPv6 address from Router Advertisement \(SLAAC\).* address=([0-9a-f:]+)/64`)
		var slaac netip.Addr
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if m := re.FindStringSubmatch(pc.output()); m != nil {
				slaac = netip.MustParseAddr(m[1])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no SLAAC address within 30 s:\n%s", pc.output())
			}
		}
		if !prefix.Contains(slaac) {
			t.Fatalf("SLAAC address %v is not in the server's %v", slaac, prefix)
		}
		base := "http://" + netip.AddrPortFrom(netip.MustParseAddr(p["TARGET_IP6"]), 80).String()
		for name, u := range proxies {
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true}, Timeout: 30 * time.Second}
			get := func(path string) string {
				start := time.Now()
				resp, err := hc.Get(base + path)
				if err != nil {
					t.Fatalf("%s: GET %s%s: %v", name, base, path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("%s: GET %s%s: %d %q", name, base, path, resp.StatusCode, b)
				}
				t.Logf("%s: GET %s%s in %v", name, base, path, time.Since(start).Round(time.Millisecond))
				return string(b)
			}
			if got := get("/hello.txt"); strings.TrimSpace(got) != helloBody(p) {
				t.Errorf("%s: hello over IPv6 = %q", name, got)
			}
			who, err := netip.ParseAddr(strings.TrimSpace(get("/whoami")))
			if err != nil || who != slaac {
				t.Errorf("%s: the server saw %q (%v), want our SLAAC address %v", name, who, err, slaac)
			}
			t.Logf("IPV6 %s %s: SLAAC %v in %v, GET [%s] by literal", p.label(), name, slaac, prefix, p["TARGET_IP6"])
		}
	})
}
