//go:build interop

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
)

// TestInteropTwoServers: one `up` with a tunnels list reaches two real
// servers at once, SoftEther (L2TPPROXY_INTEROP_ENV) and a Linux VM
// (L2TPPROXY_INTEROP_ENV2), each target by its own route, through one
// SOCKS5 proxy; the PAC file covers both; every tunnel metric carries the
// tunnel's name and a download through one tunnel grows that tunnel's
// counters; /readyz is 200 for both; SoftEther's administrator kicks our
// session and only that tunnel reconnects, the VM's carrying traffic
// meanwhile. testdata/interop/run runs it as its last step.
func TestInteropTwoServers(t *testing.T) {
	path2 := os.Getenv("L2TPPROXY_INTEROP_ENV2")
	if path2 == "" {
		t.Skip("L2TPPROXY_INTEROP_ENV2 not set: the two-server step of testdata/interop/run sets it")
	}
	se, vm := loadPeer(t), loadPeerFile(t, path2)
	if se["SERVER_KIND"] != "softether" || se["TARGET_IP"] == vm["TARGET_IP"] {
		t.Fatalf("want SoftEther first and two different targets: %s %s, %s %s", se.label(), se["TARGET_IP"], vm.label(), vm["TARGET_IP"])
	}
	// No secret in the file (the client runs as nobody and must read it):
	// they come from the environment through ${VAR}.
	tunnelYAML := func(name string, p peer, prefix string) string {
		y := fmt.Sprintf("  - name: %s\n    server: %q\n    natt-port: %s\n    psk: ${%s_PSK}\n    user: ${%s_USER}\n    password: ${%s_PASSWORD}\n    route: [%s/32]\n",
			name, net.JoinHostPort(p["SERVER"], p["IKE_PORT"]), p["NATT_PORT"], prefix, prefix, prefix, p["TARGET_IP"])
		if p["PPP_AUTH"] != "" {
			y += fmt.Sprintf("    ppp-auth: %q\n", p["PPP_AUTH"])
		}
		return y
	}
	f, err := os.CreateTemp("", "l2tpproxy-two-servers-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	fmt.Fprintf(f, "others: refuse\ntunnels:\n%s%s", tunnelYAML("softether", se, "SE"), tunnelYAML("vm", vm, "VM"))
	f.Close()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(e map[string]string) {
		for k := range e {
			delete(e, k) // the top-level server and secrets: each tunnel has its own
		}
		for prefix, p := range map[string]peer{"SE": se, "VM": vm} {
			e[prefix+"_PSK"], e[prefix+"_USER"], e[prefix+"_PASSWORD"] = p["PSK"], p["VPN_USER"], p["VPN_PASSWORD"]
		}
	}

	socks, httpAddr, adminAddr := freePort(t), freePort(t), freePort(t)
	began := time.Now()
	pc := start(t, se, env, "--config", f.Name(), "--socks5", socks, "--http", httpAddr, "--admin", adminAddr, "--log-level", "info")
	pc.waitFor(t, regexp.MustCompile(`HTTP proxy listening`), 120*time.Second)
	connected := time.Since(began)
	for _, secret := range []string{se["PSK"], se["VPN_PASSWORD"], vm["PSK"], vm["VPN_PASSWORD"]} {
		if strings.Contains(pc.output(), secret) {
			t.Fatal("a secret appears in the log")
		}
	}
	admin := adminClient{base: "http://" + adminAddr}
	if code, body := admin.get(t, "/readyz"); code != 200 || !strings.Contains(body, "softether: ok") || !strings.Contains(body, "vm: ok") {
		t.Fatalf("/readyz with both tunnels up: %d %q\n%s", code, body, pc.output())
	}

	// One SOCKS5 proxy, each target through its own tunnel; the counters
	// of that tunnel grow by the download, the other's hardly.
	socksURL, _ := url.Parse("socks5h://" + socks)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(socksURL), DisableKeepAlives: true}, Timeout: 5 * time.Minute}
	ipIn := func(s scrape, tun string) float64 {
		return s.value(t, "l2tpproxy_bytes_total", "tunnel="+tun, "layer=ip", "direction=in")
	}
	prev := admin.scrape(t)
	var summary []string
	for _, d := range []struct {
		tun, other string
		p          peer
	}{{"softether", "vm", se}, {"vm", "softether", vm}} {
		t0 := time.Now()
		resp, err := hc.Get(d.p["BIG_URL"])
		if err != nil {
			t.Fatalf("through %s: GET %s: %v", d.tun, d.p["BIG_URL"], err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || hex.EncodeToString(h.Sum(nil)) != d.p["BIG_SHA256"] {
			t.Fatalf("through %s: %d bytes, %v, sha256 %x (want %s)", d.tun, n, err, h.Sum(nil), d.p["BIG_SHA256"])
		}
		s := admin.scrape(t)
		own, other := ipIn(s, d.tun)-ipIn(prev, d.tun), ipIn(s, d.other)-ipIn(prev, d.other)
		if own < float64(n) || other > 1<<20 {
			t.Errorf("download of %d bytes through %s: its ip bytes in grew by %v, %s's by %v", n, d.tun, own, d.other, other)
		}
		summary = append(summary, fmt.Sprintf("%s %d bytes in %v", d.tun, n, time.Since(t0).Round(time.Millisecond)))
		prev = s
	}
	if _, err := hc.Get("http://10.99.0.1/"); err == nil {
		t.Error("a destination in neither tunnel's routes got through (others: refuse)")
	}
	httpURL, _ := url.Parse("http://" + httpAddr)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(httpURL.String() + "/proxy.pac")
	if err != nil {
		t.Fatal(err)
	}
	pac, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, p := range []peer{se, vm} {
		if !strings.Contains(string(pac), fmt.Sprintf(`isInNet(ip, %q, "255.255.255.255")`, p["TARGET_IP"])) {
			t.Errorf("the PAC file does not cover %s:\n%s", p["TARGET_IP"], pac)
		}
	}

	// SoftEther kicks our session: only its tunnel reconnects; the VM's
	// stays ready and carries traffic meanwhile.
	kickedAt := time.Now()
	if out, err := exec.Command(se["KICK"]).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", se["KICK"], err, out)
	}
	pc.waitFor(t, regexp.MustCompile(`tunnel went down, reconnecting.* tunnel=softether`), 30*time.Second)
	if code, body := admin.get(t, "/readyz?tunnel=vm"); code != 200 {
		t.Errorf("/readyz?tunnel=vm while SoftEther's tunnel reconnects: %d %q", code, body)
	}
	pc.getHello(t, vm, socksURL, "through the VM while SoftEther's tunnel reconnects")
	waitFor(t, "/readyz 200 after SoftEther's tunnel reconnected", func() (bool, string) {
		code, body := admin.get(t, "/readyz")
		return code == 200, fmt.Sprint(code, " ", body)
	})
	outage := time.Since(kickedAt)
	pc.getHello(t, se, socksURL, "through SoftEther after its reconnect")
	reconnects := map[string]float64{}
	for _, m := range admin.scrape(t)["l2tpproxy_reconnects_total"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "tunnel" {
				reconnects[l.GetValue()] += m.Counter.GetValue()
			}
		}
	}
	if reconnects["softether"] != 1 || reconnects["vm"] != 0 {
		t.Errorf("reconnects_total by tunnel %v, want softether 1, vm 0", reconnects)
	}
	if regexp.MustCompile(`tunnel went down.* tunnel=vm`).MatchString(pc.output()) {
		t.Errorf("the VM's tunnel went down:\n%s", pc.output())
	}
	t.Logf("TWO_SERVERS %s + %s: both up in %v; %s; PAC covers both; SoftEther kicked: reconnected and ready in %v, the VM's tunnel up throughout",
		se.label(), vm.label(), connected.Round(time.Millisecond), strings.Join(summary, ", "), outage.Round(time.Millisecond))
}
