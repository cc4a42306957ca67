package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// captureStderr runs f with os.Stderr redirected and returns what it wrote.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	f()
	os.Stderr = old
	w.Close()
	return string(<-done)
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk")
	os.WriteFile(pskFile, []byte("file-sEcReT\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"up", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT"}, "no server given"},
		{"no psk", []string{"up", "--server", "127.0.0.1", "--user", "u", "--password", "sEcReT"}, "no IPsec pre-shared key"},
		{"no user", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--password", "sEcReT"}, "no user name"},
		{"no password", []string{"up", "--server", "127.0.0.1", "--psk-file", pskFile, "--user", "u"}, "no password"},
		{"both psk flags", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--psk-file", pskFile, "--user", "u", "--password", "p"}, "either --psk or --psk-file"},
		{"missing psk file", []string{"up", "--server", "127.0.0.1", "--psk-file", filepath.Join(dir, "nope"), "--user", "u", "--password", "p"}, "cannot read --psk-file"},
		{"bad port", []string{"up", "--server", "127.0.0.1:99999", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT"}, "bad server port"},
		{"bad log level", []string{"up", "--log-level", "loud"}, "--log-level"},
		{"bad ppp-auth", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--ppp-auth", "pap,md5"}, `--ppp-auth: unknown PPP authentication method "md5"`},
		{"bad pfs", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--pfs", "maybe"}, "--pfs must be auto, yes or no"},
		{"bad ike", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--ike", "aes256-sha256-modp2049"}, `--ike: unknown algorithm "modp2049"`},
		{"bad esp", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--esp", "aes128gcm16-sha1"}, "--esp: "},
		{"negative dpd", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--dpd-interval", "-1s"}, "--dpd-interval must not be negative"},
		{"short lifetime", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--esp-lifetime", "5s"}, "must be at least 10s"},
		{"esp outlives ike", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--ike-lifetime", "1m", "--esp-lifetime", "2m"}, "must not exceed --ike-lifetime"},
		{"busy listener", []string{"up", "--server", "127.0.0.1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--socks5", "256.0.0.1:1"}, "cannot listen for SOCKS5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			start := time.Now()
			out := captureStderr(t, func() { code = run(append([]string{"l2tpproxy"}, tc.args...)) })
			if code != exitConfig {
				t.Errorf("exit code %d, want %d; output %q", code, exitConfig, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "l2tpproxy: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q, want one line containing %q", out, tc.want)
			}
			if strings.Contains(out, "sEcReT") {
				t.Errorf("a secret appears in %q", out)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// syncBuffer is a log sink safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is serve run by a test: the proxy addresses, its log, and stop.
type running struct {
	socks, http net.Addr
	log         *syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

// startServe runs serve (the `up` path) against the test server at srv's
// ports, with both proxies on ephemeral loopback ports.
func startServe(t *testing.T, srv *testserver.Server) *running {
	t.Helper()
	return startServeWith(t, srv, proxySettings{Routes: &proxy.Routes{}})
}

// startServeWith is startServe with proxy settings.
func startServeWith(t *testing.T, srv *testserver.Server, ps proxySettings) *running {
	t.Helper()
	return startServeCfg(t, srv, ps, nil)
}

// startServeCfg is startServeWith with serve's configuration edited by
// edit (if not nil).
func startServeCfg(t *testing.T, srv *testserver.Server, ps proxySettings, edit func(*serveConfig)) *running {
	t.Helper()
	r := &running{log: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	cfg := tunnel.Config{
		Server:   srv.IKEAddr().String(),
		NATTPort: srv.NATTAddr().Port(),
		PSK:      []byte("testpsk"),
		User:     "vpnuser",
		Password: []byte("vpnpass"),
		Logger:   log,
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	ready := make(chan [2]net.Addr, 1)
	sc := serveConfig{Tunnel: cfg, SOCKS5: "127.0.0.1:0", HTTP: "127.0.0.1:0", Log: log, Proxy: ps,
		Ready: func(s, h net.Addr) { ready <- [2]net.Addr{s, h} }}
	if edit != nil {
		edit(&sc)
	}
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

// stop cancels serve as SIGINT does; it must return nil promptly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

// fetch GETs u through the proxy at addr (scheme socks5h or http), without
// keep-alive, and returns the body.
func fetch(scheme string, addr net.Addr, u string) (string, error) {
	pu, _ := url.Parse(scheme + "://" + addr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestServe runs the `up` path (listeners, tunnel, both proxies, shutdown)
// against the in-process test server.
func TestServe(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r := startServe(t, srv)
	for scheme, addr := range map[string]net.Addr{"socks5h": r.socks, "http": r.http} {
		if b, err := fetch(scheme, addr, srv.URL("/hello.txt")); err != nil || b != srv.HelloBody() {
			t.Errorf("%s: %q, %v", scheme, b, err)
		}
	}
	r.stop(t)
	for _, line := range []string{"IKE SA established", "IPsec SA established", "L2TP tunnel established", "PPP authenticated", "IPCP up", "SOCKS5 proxy listening"} {
		if !strings.Contains(r.log.String(), line) {
			t.Errorf("log lacks %q", line)
		}
	}
	if strings.Contains(r.log.String(), "testpsk") || strings.Contains(r.log.String(), "vpnpass") {
		t.Error("a secret appears in the log")
	}
}

// TestReconnect restarts the server under a running `up`: the old server
// deletes its SAs as it stops (as strongSwan or Libreswan do on restart),
// a new one takes its ports, and the same proxy listeners carry traffic
// through the new tunnel without the user doing anything.
func TestReconnect(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := startServe(t, srv)
	if b, err := fetch("socks5h", r.socks, srv.URL("/hello.txt")); err != nil || b != srv.HelloBody() {
		t.Fatalf("before the restart: %q, %v", b, err)
	}

	srv.Close()
	srv2, err := testserver.Start(testserver.Config{BigSize: 1 << 20, IKEAddr: srv.IKEAddr(), NATTAddr: srv.NATTAddr()})
	if err != nil {
		t.Fatalf("restarting the server on the same ports: %v", err)
	}
	defer srv2.Close()

	// The first reconnect attempt is 1 s after the tunnel went down; allow
	// a few backoff rounds, then give up (bounded loop).
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := fetch("socks5h", r.socks, srv.URL("/hello.txt"))
		if err == nil && b == srv.HelloBody() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic through the new tunnel within 30 s: %q, %v\nlog:\n%s", b, err, r.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := strings.Count(r.log.String(), "msg=\"tunnel up\""); got != 2 {
		t.Errorf("%d 'tunnel up' lines, want 2 (one per server)", got)
	}
	if !strings.Contains(r.log.String(), "tunnel went down, reconnecting") {
		t.Error("log lacks the reconnect warning")
	}
	r.stop(t)
}
