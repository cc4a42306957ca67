package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// startServeMonitored runs serve against srv with a monitor (and edit's
// changes to the config), as up does with --admin.
func startServeMonitored(t *testing.T, srv *testserver.Server, m *monitor, ps proxySettings, edit func(*serveConfig)) *running {
	t.Helper()
	r := &running{log: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	sc := serveConfig{
		Tunnel: tunnel.Config{
			Server: srv.IKEAddr().String(), NATTPort: srv.NATTAddr().Port(),
			PSK: []byte("testpsk"), User: "vpnuser", Password: []byte("vpnpass"), Logger: log,
		},
		SOCKS5: "127.0.0.1:0", HTTP: "127.0.0.1:0", Log: log, Proxy: ps, Monitor: m, ConnectWait: 15 * time.Second,
	}
	if edit != nil {
		edit(&sc)
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	ready := make(chan [2]net.Addr, 1)
	sc.Ready = func(s, h net.Addr) { ready <- [2]net.Addr{s, h} }
	go func() { r.done <- serve(ctx, sc) }()
	select {
	case a := <-ready:
		r.socks, r.http = a[0], a[1]
	case err := <-r.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	return r
}

// adminClient talks to the admin endpoint, with credentials if user is set.
type adminClient struct {
	base       string
	user, pass string
}

func (a adminClient) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.base+path, nil)
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape is one /metrics answer parsed by Prometheus' own text parser.
type scrape map[string]*dto.MetricFamily

func (a adminClient) scrape(t *testing.T) scrape {
	t.Helper()
	code, body := a.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include labels ("k=v" each); for a histogram, its count.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	f, ok := s[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, labels)
	return 0
}

// waitFor polls cond (bounded: 20 s) and fails with what and the state
// cond last saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s (%s)", what, state)
		}
	}
}

// TestAdminEndpoint: /healthz, /readyz and every metric of /metrics move
// when their event happens: a download (bytes and packets of every layer,
// proxy connections), refused proxy requests (auth, dial), a datagram with
// an unknown SPI (ESP drop), the server deleting the IPsec SA (ESP delete,
// rekey) and the IKE SA (renewal), and a server restart (tunnel down and
// readiness 503, reconnect by cause, connect duration, counters kept).
func TestAdminEndpoint(t *testing.T) {
	srv := newServer(t, testserver.Config{BigSize: 1 << 20})
	user, pass := "alice", "s3cret"
	ps := proxySettings{Routes: &proxy.Routes{}, Credentials: proxy.NewCredentials(user, []byte(pass))}
	m := newMonitor()
	ad, err := listenAdmin("127.0.0.1:0", ps.Credentials, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	anon := adminClient{base: "http://" + ad.Addr().String()}
	admin := anon
	admin.user, admin.pass = user, pass

	// Before the tunnel: alive, not ready; credentials required.
	if code, _ := anon.get(t, "/healthz"); code != http.StatusUnauthorized {
		t.Errorf("/healthz without credentials: %d, want 401", code)
	}
	if code, body := admin.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := admin.get(t, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "connecting") {
		t.Errorf("/readyz before the tunnel: %d %q, want 503 connecting", code, body)
	}
	s0 := admin.scrape(t)
	if v := s0.value(t, "l2tpproxy_tunnel_up"); v != 0 {
		t.Errorf("tunnel_up %v before connecting", v)
	}

	r := startServeMonitored(t, srv, m, ps, nil)
	if code, body := admin.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz with the tunnel up: %d %q", code, body)
	}
	s1 := admin.scrape(t)
	if s1.value(t, "l2tpproxy_tunnel_up", "tunnel="+defaultTunnelName) != 1 || s1.value(t, "l2tpproxy_tunnel_uptime_seconds") <= 0 {
		t.Error("tunnel_up or uptime not set while up")
	}
	if n := s1.value(t, "l2tpproxy_tunnel_connect_duration_seconds"); n != 1 {
		t.Errorf("connect duration observed %v times, want 1", n)
	}

	// A download of 1 MiB through each proxy.
	creds := url.UserPassword(user, pass)
	for _, scheme := range []string{"socks5h", "http"} {
		addr := map[string]net.Addr{"socks5h": r.socks, "http": r.http}[scheme]
		if b, err := fetchAuth(scheme, addr, creds, srv.URL("/big.bin")); err != nil || len(b) != 1<<20 {
			t.Fatalf("%s download: %d bytes, %v", scheme, len(b), err)
		}
	}
	s2 := admin.scrape(t)
	for _, layer := range []string{"esp", "ppp", "ip"} {
		in := s2.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=in") - s1.value(t, "l2tpproxy_bytes_total", "layer="+layer, "direction=in")
		if in < 2<<20 {
			t.Errorf("%s bytes in grew by %v during 2 MiB of downloads", layer, in)
		}
		for _, dir := range []string{"in", "out"} {
			if d := s2.value(t, "l2tpproxy_packets_total", "layer="+layer, "direction="+dir) - s1.value(t, "l2tpproxy_packets_total", "layer="+layer, "direction="+dir); d < 10 {
				t.Errorf("%s packets %s grew by %v", layer, dir, d)
			}
		}
	}
	if d := s2.value(t, "l2tpproxy_bytes_total", "layer=esp", "direction=out") - s1.value(t, "l2tpproxy_bytes_total", "layer=esp", "direction=out"); d <= 0 {
		t.Errorf("esp bytes out did not grow (%v)", d)
	}
	// The TCP counters are scraped (value fails the test when a metric is
	// missing); loss moves them, which TestInteropLossyUpload checks
	// against SoftEther.
	for _, name := range []string{"l2tpproxy_tcp_retransmitted_segments_total", "l2tpproxy_tcp_timeouts_total", "l2tpproxy_tcp_stall_probes_total"} {
		if v := s2.value(t, name, "tunnel="+defaultTunnelName); v < 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
	if s2.value(t, "l2tpproxy_packets_total", "layer=l2tp_control", "direction=in") < 1 {
		t.Error("no L2TP control message counted (the setup has several)")
	}
	for _, p := range []string{"socks5", "http"} {
		if d := s2.value(t, "l2tpproxy_proxy_connections_total", "proxy="+p) - s1.value(t, "l2tpproxy_proxy_connections_total", "proxy="+p); d != 1 {
			t.Errorf("%s connections_total grew by %v, want 1", p, d)
		}
	}
	waitFor(t, "connections_open back to 0", func() (bool, string) {
		s := admin.scrape(t)
		a, b := s.value(t, "l2tpproxy_proxy_connections_open", "proxy=socks5"), s.value(t, "l2tpproxy_proxy_connections_open", "proxy=http")
		return a == 0 && b == 0, fmt.Sprintf("socks5 %v, http %v", a, b)
	})

	// Refusals: wrong credentials, an unreachable destination.
	bad := url.UserPassword(user, "wrong")
	fetchAuth("socks5h", r.socks, bad, srv.URL("/hello.txt"))
	fetchAuth("http", r.http, bad, srv.URL("/hello.txt"))
	closedPort := "http://" + testserver.TargetName + ":9/"
	fetchAuth("socks5h", r.socks, creds, closedPort)
	fetchAuth("http", r.http, creds, closedPort)
	// An ESP datagram with an SPI nobody knows, from the server's address.
	local := m.only().current().Info().Local
	if u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(local)); err == nil {
		u.Write(append([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}, make([]byte, 56)...))
		u.Close()
	}
	var s3 scrape
	waitFor(t, "the drop counted", func() (bool, string) {
		s3 = admin.scrape(t)
		v := s3.value(t, "l2tpproxy_esp_dropped_packets_total", "reason=unknown_spi")
		return v >= 1, fmt.Sprint("unknown_spi ", v)
	})
	for _, p := range []string{"socks5", "http"} {
		for _, reason := range []string{"auth", "dial"} {
			if d := s3.value(t, "l2tpproxy_proxy_refused_total", "proxy="+p, "reason="+reason) - s2.value(t, "l2tpproxy_proxy_refused_total", "proxy="+p, "reason="+reason); d < 1 {
				t.Errorf("%s refused{%s} grew by %v", p, reason, d)
			}
		}
		if v := s3.value(t, "l2tpproxy_proxy_refused_total", "proxy="+p, "reason=limit"); v != 0 {
			t.Errorf("%s refused{limit} = %v with no limit reached", p, v)
		}
	}

	// The server deletes our IPsec SA (a new one follows) and the IKE SA.
	if err := srv.DeleteIPsecSAs(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ESP delete and rekey counted", func() (bool, string) {
		s := admin.scrape(t)
		d, r := s.value(t, "l2tpproxy_esp_deleted_by_server_total"), s.value(t, "l2tpproxy_esp_rekeys_total")
		return d >= 1 && r >= 1, fmt.Sprintf("deleted %v, rekeys %v", d, r)
	})
	if err := srv.DeleteIKESA(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "IKE renewal counted", func() (bool, string) {
		v := admin.scrape(t).value(t, "l2tpproxy_ike_renewals_total")
		return v >= 1, fmt.Sprint("renewals ", v)
	})
	// The new IKE SA brings its own IPsec SA (the server's third).
	waitFor(t, "the IPsec SA of the new IKE SA", func() (bool, string) {
		return srv.IPsecSAs() >= 3, fmt.Sprint(srv.IPsecSAs(), " IPsec SAs")
	})
	s4 := admin.scrape(t)
	if d, r, n := s4.value(t, "l2tpproxy_esp_deleted_by_server_total"), s4.value(t, "l2tpproxy_esp_rekeys_total"), s4.value(t, "l2tpproxy_ike_renewals_total"); d != 1 || r < 1 || n != 1 {
		t.Errorf("after one IPsec SA delete and one IKE SA delete: deleted %v, rekeys %v, renewals %v; want 1, >= 1, 1", d, r, n)
	}

	// The server restarts: not ready while the tunnel is down, ready again
	// after the reconnect, which is counted by cause; totals are kept.
	srv.Close()
	waitFor(t, "/readyz 503 after the server stopped", func() (bool, string) {
		code, body := admin.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "tunnel down"), fmt.Sprint(code, " ", body)
	})
	if v := admin.scrape(t).value(t, "l2tpproxy_tunnel_up"); v != 0 {
		t.Errorf("tunnel_up %v while down", v)
	}
	srv2, err := testserver.Start(testserver.Config{BigSize: 1 << 20, IKEAddr: srv.IKEAddr(), NATTAddr: srv.NATTAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	waitFor(t, "/readyz 200 after the reconnect", func() (bool, string) {
		code, body := admin.get(t, "/readyz")
		return code == 200, fmt.Sprint(code, " ", body)
	})
	s5 := admin.scrape(t)
	var reconnects float64
	for _, m := range s5["l2tpproxy_reconnects_total"].GetMetric() {
		reconnects += m.Counter.GetValue()
		t.Logf("reconnects_total{cause=%q} %v", m.Label[0].GetValue(), m.Counter.GetValue())
	}
	if reconnects != 1 {
		t.Errorf("reconnects_total sums to %v, want 1", reconnects)
	}
	if n := s5.value(t, "l2tpproxy_tunnel_connect_duration_seconds"); n != 2 {
		t.Errorf("connect duration observed %v times, want 2", n)
	}
	if s5.value(t, "l2tpproxy_tunnel_up") != 1 {
		t.Error("tunnel_up not 1 after the reconnect")
	}
	for _, name := range []string{"l2tpproxy_esp_rekeys_total", "l2tpproxy_ike_renewals_total"} {
		if s5.value(t, name) < s4.value(t, name) {
			t.Errorf("%s went back across the reconnect", name)
		}
	}
	if a, b := s5.value(t, "l2tpproxy_bytes_total", "layer=esp", "direction=in"), s4.value(t, "l2tpproxy_bytes_total", "layer=esp", "direction=in"); a < b {
		t.Errorf("esp bytes in went back across the reconnect: %v < %v", a, b)
	}
	if b, err := fetchAuth("http", r.http, creds, srv.URL("/hello.txt")); err != nil || b != srv.HelloBody() {
		t.Errorf("after the reconnect: %q, %v", b, err)
	}
	r.stop(t)
}

// TestAdminConfig: --admin beyond loopback without proxy credentials is a
// configuration error (one line, exit 2), as for the proxies; so are a bad
// --log-format and --pcap-max-size.
func TestAdminConfig(t *testing.T) {
	base := []string{"l2tpproxy", "up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--socks5", "", "--http", ""}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin", "0.0.0.0:0"}, "--admin 0.0.0.0:0 is not a loopback address: proxy credentials are needed"},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"--pcap", t.TempDir() + "/x.pcap", "--pcap-max-size", "lots"}, `--pcap-max-size: "lots" is not a positive size`},
	} {
		var code int
		out := captureStderr(t, func() { code = run(append(append([]string(nil), base...), tc.args...)) })
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != exitConfig || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, output %q; want exit 2 and one line with %q", tc.args, code, out, tc.want)
		}
	}
	for v, want := range map[string]int64{"100MiB": 100 << 20, "4096": 4096, "1 GiB": 1 << 30, "64K": 64 << 10} {
		if got, err := parseSize(v); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"0", "-1", "1.5M", "MiB", "1TiB"} {
		if _, err := parseSize(v); err == nil {
			t.Errorf("parseSize(%q) accepted", v)
		}
	}
}

// TestAdminLoopbackWithCredentials: with credentials a non-loopback
// listener is allowed (and requires them).
func TestAdminLoopbackWithCredentials(t *testing.T) {
	ad, err := listenAdmin("0.0.0.0:0", proxy.NewCredentials("u", []byte("p")), newMonitor(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	port := ad.Addr().(*net.TCPAddr).Port
	a := adminClient{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if code, _ := a.get(t, "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d", code)
	}
	a.user, a.pass = "u", "wrong"
	if code, _ := a.get(t, "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong password: %d", code)
	}
	a.pass = "p"
	if code, _ := a.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz with credentials: %d", code)
	}
}
