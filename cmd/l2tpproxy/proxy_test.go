package main

import (
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// TestOpenProxyRefused: a proxy beyond loopback without credentials is a
// configuration error (exit 2, one line saying credentials are needed),
// before anything is dialled; credentials or --insecure-open-proxy get
// past the check (the run then fails later, on the unreachable server).
func TestOpenProxyRefused(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("sEcReT\n"), 0o600)
	base := []string{"l2tpproxy", "up", "--server", "127.0.0.1:1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--connect-timeout", "1s"}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"socks5 wildcard", []string{"--socks5", "0.0.0.0:0", "--http", ""}, exitConfig, "--socks5 0.0.0.0:0 is not a loopback address: proxy credentials are needed"},
		{"http wildcard", []string{"--socks5", "", "--http", ":0"}, exitConfig, "--http :0 is not a loopback address: proxy credentials are needed"},
		{"user without password", []string{"--proxy-user", "alice"}, exitConfig, "--proxy-user needs --proxy-password"},
		{"password without user", []string{"--proxy-password", "sEcReT"}, exitConfig, "needs --proxy-user"},
		{"bad route", []string{"--route", "10.0.0.0/33"}, exitConfig, "--route \"10.0.0.0/33\" is not a CIDR"},
		{"bad others", []string{"--domain", "corp.example", "--others", "maybe"}, exitConfig, "--others must be direct or refuse"},
		// Past the check: the run fails later, not with a config error.
		{"with credentials", []string{"--socks5", "0.0.0.0:0", "--http", "", "--proxy-user", "alice", "--proxy-password-file", pwFile}, exitIKE, ""},
		{"insecure override", []string{"--socks5", "0.0.0.0:0", "--http", "", "--insecure-open-proxy"}, exitIKE, "INSECURE OPEN PROXY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			out := captureStderr(t, func() { code = run(append(append([]string(nil), base...), tc.args...)) })
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output %q", code, tc.wantCode, out)
			}
			if strings.Contains(out, "sEcReT") {
				t.Errorf("a secret appears in %q", out)
			}
			if tc.wantCode != exitConfig {
				if strings.Contains(out, "credentials are needed") || !strings.Contains(out, tc.want) {
					t.Errorf("output %q, want %q and no refusal", out, tc.want)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q, want one line containing %q", out, tc.want)
			}
		})
	}
}

// TestServeProxyFeatures runs `up` against the test server with
// credentials and split routing: auth on both proxies; the VPN's name and
// address through the tunnel, a loopback server (outside the routes)
// dialled directly; /proxy.pac; UDP ASSOCIATE to the far side's UDP echo,
// by address and by a name only the VPN's DNS knows.
func TestServeProxyFeatures(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") }))
	defer direct.Close()
	routes, err := proxy.ParseRoutes([]string{testserver.ServerIP.String() + "/32"}, []string{"vpn.test"}, "direct")
	if err != nil {
		t.Fatal(err)
	}
	r := startServeWith(t, srv, proxySettings{
		Credentials: proxy.NewCredentials("alice", []byte("pr0xy")),
		Routes:      routes,
	})
	defer r.stop(t)

	for _, scheme := range []string{"socks5h", "http"} {
		addr := r.socks
		if scheme == "http" {
			addr = r.http
		}
		if _, err := fetchAuth(scheme, addr, url.UserPassword("alice", "wrong"), srv.URL("/hello.txt")); err == nil {
			t.Errorf("%s: wrong proxy password accepted", scheme)
		}
		b, err := fetchAuth(scheme, addr, url.UserPassword("alice", "pr0xy"), srv.URL("/hello.txt"))
		if err != nil || b != srv.HelloBody() {
			t.Errorf("%s through the VPN by name: %q, %v", scheme, b, err)
		}
		b, err = fetchAuth(scheme, addr, url.UserPassword("alice", "pr0xy"), "http://"+testserver.ServerIP.String()+"/hello.txt")
		if err != nil || b != srv.HelloBody() {
			t.Errorf("%s through the VPN by address: %q, %v", scheme, b, err)
		}
		b, err = fetchAuth(scheme, addr, url.UserPassword("alice", "pr0xy"), direct.URL)
		if err != nil || b != "direct" {
			t.Errorf("%s direct (outside the routes): %q, %v", scheme, b, err)
		}
	}

	resp, err := http.Get("http://" + r.http.String() + "/proxy.pac")
	if err != nil {
		t.Fatal(err)
	}
	pac, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" || !strings.Contains(string(pac), "PROXY "+r.http.String()) {
		t.Errorf("PAC: %s\n%s", resp.Header.Get("Content-Type"), pac)
	}

	// UDP ASSOCIATE to the far side's echo (port 7).
	ctrl, relay := udpAssociate(t, r.socks.String(), "alice", "pr0xy")
	defer ctrl.Close()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ip4 := testserver.ServerIP.As4()
	byAddr := be.BigEndian.AppendUint16(append([]byte{0, 0, 0, 1}, ip4[:]...), testserver.UDPEchoPort)
	byName := be.BigEndian.AppendUint16(append([]byte{0, 0, 0, 3, byte(len(testserver.TargetName))}, testserver.TargetName...), testserver.UDPEchoPort)
	for name, hdr := range map[string][]byte{"address": byAddr, "name": byName} {
		payload := "ping via " + name
		if _, err := pc.WriteToUDP(append(append([]byte(nil), hdr...), payload...), relay); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := pc.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("UDP by %s: no reply: %v", name, err)
		}
		h, got, err := proxy.ParseUDPDatagram(buf[:n])
		if err != nil || string(got) != payload || h.Host != testserver.ServerIP.String() || h.Port != testserver.UDPEchoPort {
			t.Errorf("UDP by %s: %+v %q %v", name, h, got, err)
		}
	}
	if strings.Contains(r.log.String(), "pr0xy") {
		t.Error("the proxy password appears in the log")
	}
}

// fetchAuth is fetch with proxy credentials.
func fetchAuth(scheme string, addr net.Addr, user *url.Userinfo, u string) (string, error) {
	pu := &url.URL{Scheme: scheme, Host: addr.String(), User: user}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

// udpAssociate authenticates (RFC 1929) and sends UDP ASSOCIATE; it
// returns the control connection and the relay address.
func udpAssociate(t *testing.T, addr, user, pass string) (net.Conn, *net.UDPAddr) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte{5, 1, 2, 1, byte(len(user))}
	msg = append(msg, user...)
	msg = append(msg, byte(len(pass)))
	msg = append(msg, pass...)
	msg = append(msg, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0)
	c.Write(msg)
	var rep [2 + 2 + 10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	if rep[1] != 2 || rep[3] != 0 || rep[5] != 0 || rep[7] != 1 {
		t.Fatalf("UDP ASSOCIATE handshake % x", rep)
	}
	c.SetDeadline(time.Time{})
	return c, &net.UDPAddr{IP: net.IP(rep[8:12]), Port: int(be.BigEndian.Uint16(rep[12:]))}
}

// TestProxySettingsFromEnv: the environment variables, comma-separated
// lists included, reach the settings like the flags.
func TestProxySettingsFromEnv(t *testing.T) {
	t.Setenv("L2TPPROXY_ROUTE", "10.0.0.0/8, 192.168.1.0/24")
	t.Setenv("L2TPPROXY_DOMAIN", "corp.example,intra")
	t.Setenv("L2TPPROXY_OTHERS", "refuse")
	t.Setenv("L2TPPROXY_PROXY_USER", "alice")
	t.Setenv("L2TPPROXY_PROXY_PASSWORD", "pw")
	var ps proxySettings
	app := &cli.App{Flags: listenerFlags(), Action: func(cx *cli.Context) (err error) {
		ps, err = proxySettingsFrom(cx)
		return err
	}}
	if err := app.Run([]string{"x", "--route", "172.16.0.0/12,1.2.3.4"}); err != nil {
		t.Fatal(err)
	}
	r := ps.Routes
	if fmt.Sprint(r.Nets) != "[172.16.0.0/12 1.2.3.4/32]" || strings.Join(r.Domains, " ") != "corp.example intra" || r.Others != proxy.ViaRefuse {
		t.Errorf("routes %+v (a flag replaces its environment variable)", r)
	}
	if ps.Credentials == nil || !ps.Credentials.Valid("alice", "pw") {
		t.Error("credentials from the environment not set")
	}
	if ps.MaxConns != 2048 || ps.HandshakeTimeout != proxy.DefaultHandshakeTimeout {
		t.Errorf("defaults: %d %v", ps.MaxConns, ps.HandshakeTimeout)
	}
	if err := app.Run([]string{"x"}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ps.Routes.Nets) != "[10.0.0.0/8 192.168.1.0/24]" {
		t.Errorf("routes from the environment: %v", ps.Routes.Nets)
	}
}
