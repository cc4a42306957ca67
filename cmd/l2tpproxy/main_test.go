package main

import (
	"bytes"
	"context"
	"fmt"
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

// TestServe runs the `up` path (listeners, tunnel, both proxies, shutdown)
// against the in-process test server.
func TestServe(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := tunnel.Config{
		Server:   srv.IKEAddr().String(),
		NATTPort: srv.NATTAddr().Port(),
		PSK:      []byte("testpsk"),
		User:     "vpnuser",
		Password: []byte("vpnpass"),
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	cfg.Logger = log
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, "127.0.0.1:0", "127.0.0.1:0", log, func(s, h net.Addr) { ready <- [2]net.Addr{s, h} })
	}()
	var addrs [2]net.Addr
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	for i, scheme := range []string{"socks5h", "http"} {
		u, _ := url.Parse(scheme + "://" + addrs[i].String())
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}, Timeout: 20 * time.Second}
		resp, err := hc.Get(srv.URL("/hello.txt"))
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != srv.HelloBody() {
			t.Errorf("%s: %q", scheme, b)
		}
		hc.CloseIdleConnections()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	for _, line := range []string{"IKE SA established", "IPsec SA established", "L2TP tunnel established", "PPP authenticated", "IPCP up", "SOCKS5 proxy listening"} {
		if !strings.Contains(logBuf.String(), line) {
			t.Errorf("log lacks %q", line)
		}
	}
	if strings.Contains(logBuf.String(), "testpsk") || strings.Contains(logBuf.String(), "vpnpass") {
		t.Error("a secret appears in the log")
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

// TestReconnect restarts the server under a running `up`: the old server
// deletes its SAs as it stops (as strongSwan or Libreswan do on restart),
// a new one takes its ports, and the same proxy listeners carry traffic
// through the new tunnel without the user doing anything.
func TestReconnect(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ikeAddr, nattAddr := srv.IKEAddr(), srv.NATTAddr()
	cfg := tunnel.Config{
		Server:   ikeAddr.String(),
		NATTPort: nattAddr.Port(),
		PSK:      []byte("testpsk"),
		User:     "vpnuser",
		Password: []byte("vpnpass"),
	}
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	cfg.Logger = log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, "127.0.0.1:0", "", log, func(s, _ net.Addr) { ready <- s })
	}()
	var socks net.Addr
	select {
	case socks = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	u, _ := url.Parse("socks5h://" + socks.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	get := func() error {
		resp, err := hc.Get(srv.URL("/hello.txt"))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != srv.HelloBody() {
			err = fmt.Errorf("body %q", b)
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("before the restart: %v", err)
	}

	srv.Close()
	srv2, err := testserver.Start(testserver.Config{BigSize: 1 << 20, IKEAddr: ikeAddr, NATTAddr: nattAddr})
	if err != nil {
		t.Fatalf("restarting the server on the same ports: %v", err)
	}
	defer srv2.Close()

	// The first reconnect attempt is 1 s after the tunnel went down; allow
	// a few backoff rounds, then give up (bounded loop).
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := get()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic through the new tunnel within 30 s: %v\nlog:\n%s", err, logBuf.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := strings.Count(logBuf.String(), "msg=\"tunnel up\""); got != 2 {
		t.Errorf("%d 'tunnel up' lines, want 2 (one per server)", got)
	}
	if !strings.Contains(logBuf.String(), "tunnel went down, reconnecting") {
		t.Error("log lacks the reconnect warning")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}
