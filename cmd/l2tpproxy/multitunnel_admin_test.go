package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestMultiTunnelAdmin: with a tunnels list, every tunnel metric carries
// the tunnel's name and moves only for that tunnel: a download through
// each tunnel grows its own byte counters, not the other's; /readyz is 200
// only while both are up (and /readyz?tunnel=NAME tells them apart): it
// turns 503 when one server goes away, the other staying ready, and 200
// again after that tunnel's reconnect, which is counted for it alone.
func TestMultiTunnelAdmin(t *testing.T) {
	const sizeA, sizeB = 1 << 20, 3 << 19
	srvA, err := testserver.Start(testserver.Config{BigSize: sizeA})
	if err != nil {
		t.Fatal(err)
	}
	defer srvA.Close()
	srvB, err := testserver.Start(testserver.Config{BigSize: sizeB})
	if err != nil {
		t.Fatal(err)
	}
	m := newMonitor("routed", "named")
	ad, err := listenAdmin("127.0.0.1:0", nil, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	admin := adminClient{base: "http://" + ad.Addr().String()}

	code, body := admin.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "routed: connecting\nnamed: connecting") {
		t.Errorf("/readyz before the tunnels: %d %q", code, body)
	}
	if code, body := admin.get(t, "/readyz?tunnel=nope"); code != http.StatusNotFound {
		t.Errorf("/readyz of an unknown tunnel: %d %q, want 404", code, body)
	}

	pcapPath := t.TempDir() + "/multi.pcap"
	pf, err := createPcap(pcapPath, 64<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mt := startMulti(t, srvA, srvB, m, pf.stream)
	for _, path := range []string{"/readyz", "/readyz?tunnel=routed", "/readyz?tunnel=named"} {
		if code, body := admin.get(t, path); code != 200 {
			t.Errorf("%s with both tunnels up: %d %q", path, code, body)
		}
	}
	ipIn := func(s scrape, tun string) float64 {
		return s.value(t, "l2tpproxy_bytes_total", "tunnel="+tun, "layer=ip", "direction=in")
	}
	s0 := admin.scrape(t)
	for _, tun := range []string{"routed", "named"} {
		if s0.value(t, "l2tpproxy_tunnel_up", "tunnel="+tun) != 1 || s0.value(t, "l2tpproxy_tunnel_connect_duration_seconds", "tunnel="+tun) != 1 {
			t.Errorf("tunnel %s: not up, or its connect not observed once", tun)
		}
	}

	// One download through each tunnel: its counters grow by the download,
	// the other's by at most its keepalives.
	prev := s0
	for _, d := range []struct {
		host        string
		size        int64
		tun, other  string
		destination string
	}{{testserver.ServerIP.String(), sizeA, "routed", "named", "address"}, {testserver.TargetName, sizeB, "named", "routed", "name"}} {
		if n, err := bigLen(mt.socks, d.host); err != nil || n != d.size {
			t.Fatalf("download from %s: %d bytes, %v", d.host, n, err)
		}
		s := admin.scrape(t)
		if g := ipIn(s, d.tun) - ipIn(prev, d.tun); g < float64(d.size) {
			t.Errorf("download of %d bytes by %s: tunnel %s ip bytes in grew by %v", d.size, d.destination, d.tun, g)
		}
		if g := ipIn(s, d.other) - ipIn(prev, d.other); g > 64<<10 {
			t.Errorf("download through %s: the other tunnel's (%s) ip bytes in grew by %v", d.tun, d.other, g)
		}
		prev = s
	}
	if d := prev.value(t, "l2tpproxy_proxy_connections_total", "proxy=socks5") - s0.value(t, "l2tpproxy_proxy_connections_total", "proxy=socks5"); d != 2 {
		t.Errorf("socks5 connections_total grew by %v, want 2 (one per download)", d)
	}

	// B goes away: not ready as a whole nor for B, still ready for A.
	srvB.Close()
	waitFor(t, "/readyz 503 after server B stopped", func() (bool, string) {
		code, body := admin.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "named: tunnel down"), fmt.Sprint(code, " ", body)
	})
	if code, body := admin.get(t, "/readyz?tunnel=routed"); code != 200 {
		t.Errorf("/readyz?tunnel=routed while only B is down: %d %q", code, body)
	}
	if code, body := admin.get(t, "/readyz?tunnel=named"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz?tunnel=named while B is down: %d %q", code, body)
	}
	s := admin.scrape(t)
	if s.value(t, "l2tpproxy_tunnel_up", "tunnel=named") != 0 || s.value(t, "l2tpproxy_tunnel_up", "tunnel=routed") != 1 {
		t.Error("tunnel_up while B is down: want named 0, routed 1")
	}
	if n, err := bigLen(mt.socks, testserver.ServerIP.String()); err != nil || n != sizeA {
		t.Errorf("tunnel A while B is down: %d, %v", n, err)
	}

	// B comes back: ready again; one reconnect, B's.
	srvB2, err := testserver.Start(testserver.Config{BigSize: sizeB, IKEAddr: srvB.IKEAddr(), NATTAddr: srvB.NATTAddr()})
	if err != nil {
		t.Fatalf("restarting B: %v", err)
	}
	defer srvB2.Close()
	waitFor(t, "/readyz 200 after B's reconnect", func() (bool, string) {
		code, body := admin.get(t, "/readyz")
		return code == 200, fmt.Sprint(code, " ", body)
	})
	s = admin.scrape(t)
	reconnects := map[string]float64{}
	for _, m := range s["l2tpproxy_reconnects_total"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "tunnel" {
				reconnects[l.GetValue()] += m.Counter.GetValue()
			}
		}
	}
	if reconnects["named"] != 1 || reconnects["routed"] != 0 {
		t.Errorf("reconnects_total by tunnel %v, want named 1 and routed 0", reconnects)
	}
	if a, b := s.value(t, "l2tpproxy_tunnel_connect_duration_seconds", "tunnel=routed"), s.value(t, "l2tpproxy_tunnel_connect_duration_seconds", "tunnel=named"); a != 1 || b != 2 {
		t.Errorf("connects observed: routed %v, named %v; want 1 and 2", a, b)
	}
	if ipIn(s, "named") < ipIn(prev, "named") {
		t.Error("B's ip bytes in went back across its reconnect")
	}
	if n, err := bigLen(mt.socks, testserver.TargetName); err != nil || n != sizeB {
		t.Errorf("tunnel B after its reconnect: %d, %v", n, err)
	}
	mt.cancel()
	select {
	case err := <-mt.done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	// --pcap with a tunnels list: both tunnels' requests in the one file.
	pf.Close()
	b, err := os.ReadFile(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{testserver.ServerIP.String(), testserver.TargetName} {
		if !strings.Contains(string(b), "GET /big.bin HTTP/1.1\r\nHost: "+host+"\r\n") {
			t.Errorf("the capture has no request for /big.bin of %s", host)
		}
	}
}
