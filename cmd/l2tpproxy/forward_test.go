package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

func TestParseForward(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		remote bool
		want   forward
		err    string
	}{
		{spec: "8080:web.corp:80", want: forward{Bind: "127.0.0.1", Port: 8080, Host: "web.corp", HostPort: 80}},
		{spec: "0.0.0.0:8080:10.0.0.1:80/tcp", want: forward{Bind: "0.0.0.0", Port: 8080, Host: "10.0.0.1", HostPort: 80}},
		{spec: "[::1]:5353:10.0.0.53:53/udp", want: forward{Bind: "::1", Port: 5353, Host: "10.0.0.53", HostPort: 53, UDP: true}},
		{spec: ":8080:h:80", want: forward{Bind: "0.0.0.0", Port: 8080, Host: "h", HostPort: 80}},
		{spec: "0:h:80", want: forward{Bind: "127.0.0.1", Port: 0, Host: "h", HostPort: 80}},
		{spec: "2222:localhost:22", remote: true, want: forward{Remote: true, Port: 2222, Host: "localhost", HostPort: 22}},
		{spec: "5353:127.0.0.1:53/udp", remote: true, want: forward{Remote: true, UDP: true, Port: 5353, Host: "127.0.0.1", HostPort: 53}},
		{spec: "80:web", err: "want [BIND:]PORT:HOST:HOSTPORT"},
		{spec: "a:b:c:d:e", err: "want [BIND:]PORT:HOST:HOSTPORT"},
		{spec: "x:web:80", err: `"x" is not a port`},
		{spec: "80:web:0", err: `"0" is not a port`},
		{spec: "80:web:65536", err: `"65536" is not a port`},
		{spec: "80::81", err: "no HOST"},
		{spec: "[::1:80:h:81", err: "unbalanced"},
		{spec: "0:h:80", remote: true, err: `"0" is not a port`},
		{spec: "10.0.0.1:80:h:81", remote: true, err: "always our VPN address"},
	} {
		got, err := parseForward(tc.spec, tc.remote)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
	if got := splitForwardList([]string{"1:a:2, 3:b:4", "5:c:6 7:d:8"}); len(got) != 4 {
		t.Errorf("split: %q", got)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startForwards runs serve (no proxies) with the given -L and -R specs.
func startForwards(t *testing.T, srv *testserver.Server, local, remote []string) *running {
	t.Helper()
	var fs []forward
	for _, s := range local {
		f, err := parseForward(s, false)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	for _, s := range remote {
		f, err := parseForward(s, true)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	r := &running{log: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	cfg := tunnel.Config{Server: srv.IKEAddr().String(), NATTPort: srv.NATTAddr().Port(), PSK: []byte("testpsk"),
		User: "vpnuser", Password: []byte("vpnpass"), Logger: log}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	ready := make(chan struct{})
	go func() {
		r.done <- serve(ctx, serveConfig{Tunnel: cfg, Log: log, Proxy: proxySettings{Routes: &proxy.Routes{}}, Forwards: fs,
			ConnectWait: 20 * time.Second, Ready: func(net.Addr, net.Addr) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	return r
}

// getVia GETs /hello.txt from the forwarded port at addr.
func getVia(addr string) (string, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/hello.txt")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// udpRoundTrip sends msg on conn and reads one reply.
func udpRoundTrip(conn net.Conn, msg string) (string, error) {
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	b := make([]byte, 1500)
	n, err := conn.Read(b)
	return string(b[:n]), err
}

// echoServers starts a TCP line-echo and a UDP echo service on this host's
// loopback (the targets of -R) that prefix what they echo.
func echoServers(t *testing.T) (tcpAddr, udpAddr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "local:%s\n", sc.Text())
				}
			}()
		}
	}()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("local:"), b[:n]...), from)
		}
	}()
	return ln.Addr().String(), pc.LocalAddr().String()
}

// remoteTCP connects from the far side to our VPN address's port and
// exchanges a line.
func remoteTCP(srv *testserver.Server, port int, line string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srv.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", testserver.ClientIP, port))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	return bufio.NewReader(c).ReadString('\n')
}

func remoteUDP(srv *testserver.Server, port int, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srv.DialContext(ctx, "udp", fmt.Sprintf("%s:%d", testserver.ClientIP, port))
	if err != nil {
		return "", err
	}
	defer c.Close()
	return udpRoundTrip(c, msg)
}

// TestForwards: -L (TCP: an HTTP GET of the far side's web server by name,
// resolved by the VPN's DNS; UDP: the far side's echo) and -R (TCP and UDP:
// the far side reaches services on this host's loopback through our VPN
// address), then the server restarts and all four work again through the
// new tunnel: -L on the same listeners, -R on the new stack.
func TestForwards(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lTCP, lUDP := freeAddr(t, "tcp"), freeAddr(t, "udp")
	eTCP, eUDP := echoServers(t)
	local := []string{
		lTCP + ":" + testserver.TargetName + ":80",
		fmt.Sprintf("%s:%s:%d/udp", lUDP, testserver.ServerIP, testserver.UDPEchoPort),
	}
	remote := []string{"8022:" + eTCP, "8053:" + eUDP + "/udp"}
	r := startForwards(t, srv, local, remote)

	uc, err := net.Dial("udp", lUDP)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	check := func(when string, srv *testserver.Server) {
		t.Helper()
		if b, err := getVia(lTCP); err != nil || b != srv.HelloBody() {
			t.Errorf("%s: -L tcp: %q, %v", when, b, err)
		}
		if b, err := udpRoundTrip(uc, "ping-"+when); err != nil || b != "ping-"+when {
			t.Errorf("%s: -L udp: %q, %v", when, b, err)
		}
		if b, err := remoteTCP(srv, 8022, "hi-"+when); err != nil || b != "local:hi-"+when+"\n" {
			t.Errorf("%s: -R tcp: %q, %v", when, b, err)
		}
		if b, err := remoteUDP(srv, 8053, "u-"+when); err != nil || b != "local:u-"+when {
			t.Errorf("%s: -R udp: %q, %v", when, b, err)
		}
	}
	check("first", srv)

	srv.Close()
	srv2, err := testserver.Start(testserver.Config{IKEAddr: srv.IKEAddr(), NATTAddr: srv.NATTAddr()})
	if err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	defer srv2.Close()
	// -L waits for the tunnel (connect-wait 20 s): the first GET after the
	// restart is the reconnect's proof, no polling needed.
	if b, err := getVia(lTCP); err != nil || b != srv2.HelloBody() {
		// The HTTP client's own timeout is 5 s; one reconnect is ~1-2 s
		// after the old tunnel is noticed down. Retry a bounded few times.
		for i := 0; i < 5 && (err != nil || b != srv2.HelloBody()); i++ {
			time.Sleep(time.Second)
			b, err = getVia(lTCP)
		}
		if err != nil {
			t.Fatalf("no -L traffic after the restart: %v\n%s", err, r.log.String())
		}
	}
	check("after-reconnect", srv2)
	if n := strings.Count(r.log.String(), "remote port forward listening"); n != 4 {
		t.Errorf("%d -R listens, want 4 (2 per tunnel)", n)
	}
	r.stop(t)
}

// TestForwardOpenBindRefused: a -L beyond loopback is refused before
// connecting, credentials or not; --insecure-open-proxy allows it.
func TestForwardOpenBindRefused(t *testing.T) {
	base := []string{"up", "--server", "127.0.0.1:1", "--psk", "sEcReT", "--user", "u", "--password", "sEcReT", "--connect-timeout", "1s", "--socks5", "", "--http", ""}
	code, _, errs := runCapture(t, append(base, "-L", "0.0.0.0:0:web:80", "--proxy-user", "a", "--proxy-password", "sEcReT")...)
	if code != exitConfig || !strings.Contains(errs, "needs --insecure-open-proxy") || strings.Contains(errs, "sEcReT") {
		t.Errorf("code %d, %q", code, errs)
	}
	code, _, errs = runCapture(t, append(base, "-L", "0.0.0.0:0:web:80", "--insecure-open-proxy")...)
	if code == exitConfig || !strings.Contains(errs, "INSECURE: a port forward listens beyond loopback") {
		t.Errorf("code %d, %q", code, errs)
	}
}
