package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("L2TPPROXY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startServer(t testing.TB, cfg testserver.Config) *testserver.Server {
	t.Helper()
	checkNoLeaks(t)
	if cfg.BigSize == 0 {
		cfg.BigSize = 4 << 20
	}
	cfg.Logger = testLogger(t).With("side", "server")
	srv, err := testserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func clientConfig(t testing.TB, srv *testserver.Server) tunnel.Config {
	return tunnel.Config{
		Server:         srv.IKEAddr().String(),
		NATTPort:       srv.NATTAddr().Port(),
		PSK:            []byte("testpsk"),
		User:           "vpnuser",
		Password:       []byte("vpnpass"),
		ConnectTimeout: 20 * time.Second,
		Logger:         testLogger(t).With("side", "client"),
	}
}

func dial(t testing.TB, cfg tunnel.Config) *tunnel.Client {
	t.Helper()
	c, err := tunnel.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEndToEnd runs the whole client against the in-process server: IKE,
// ESP, L2TP, PPP, both gVisor stacks, DNS through the tunnel, and both
// proxies, with a download and an upload checked by sha256.
func TestEndToEnd(t *testing.T) {
	srv := startServer(t, testserver.Config{})
	c := dial(t, clientConfig(t, srv))
	info := c.Info()
	if info.Address != testserver.ClientIP {
		t.Errorf("address %v, want %v", info.Address, testserver.ClientIP)
	}
	if len(info.DNS) == 0 || info.DNS[0] != testserver.ServerIP {
		t.Errorf("DNS %v, want [%v]", info.DNS, testserver.ServerIP)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs, err := c.LookupHost(ctx, testserver.TargetName)
	if err != nil || len(addrs) == 0 || addrs[0] != testserver.ServerIP {
		t.Fatalf("LookupHost(%s) = %v, %v", testserver.TargetName, addrs, err)
	}

	socksLn := listen(t)
	httpLn := listen(t)
	go proxy.NewSOCKS5(c, c, nil).Serve(ctx, socksLn)
	go proxy.NewHTTP(c, nil).Serve(ctx, httpLn)

	socksURL, _ := url.Parse("socks5h://" + socksLn.Addr().String())
	httpURL, _ := url.Parse("http://" + httpLn.Addr().String())
	for name, proxyURL := range map[string]*url.URL{"socks5": socksURL, "http": httpURL} {
		t.Run(name, func(t *testing.T) {
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 60 * time.Second}
			defer hc.CloseIdleConnections()
			body := get(t, hc, srv.URL("/hello.txt"))
			if string(body) != srv.HelloBody() {
				t.Errorf("hello.txt = %q", body)
			}
			big := get(t, hc, srv.URL("/big.bin"))
			if sum := sha256.Sum256(big); hex.EncodeToString(sum[:]) != srv.BigSHA256() {
				t.Errorf("big.bin: %d bytes, sha256 mismatch", len(big))
			}
			up := make([]byte, 2<<20)
			rand.Read(up)
			resp, err := hc.Post(srv.URL("/upload"), "application/octet-stream", bytes.NewReader(up))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			sum := sha256.Sum256(up)
			if want := fmt.Sprintf("%d %x\n", len(up), sum); string(got) != want {
				t.Errorf("upload answer %q, want %q", got, want)
			}
		})
	}

	// HTTPS-style CONNECT through the HTTP proxy, speaking raw HTTP inside.
	t.Run("connect", func(t *testing.T) {
		conn, err := net.Dial("tcp", httpLn.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:80 HTTP/1.1\r\nHost: %s:80\r\n\r\n", testserver.TargetName, testserver.TargetName)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		fmt.Fprintf(conn, "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != srv.HelloBody() {
			t.Errorf("through CONNECT: %q", b)
		}
	})

	// UDP through the tunnel.
	t.Run("udp", func(t *testing.T) {
		conn, err := c.DialContext(ctx, "udp", fmt.Sprintf("%s:%d", testserver.ServerIP, testserver.UDPEchoPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		msg := []byte("ping through the tunnel")
		conn.Write(msg)
		buf := make([]byte, 100)
		n, err := conn.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo = %q, %v", buf[:n], err)
		}
	})

	// Clean teardown: Close returns promptly and Done is closed.
	start := time.Now()
	c.Close()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err after Close = %v", err)
	}
}

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func get(t *testing.T, hc *http.Client, u string) []byte {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return b
}

// TestFailures checks that each failure class is reported as such, quickly,
// and never leaks the secrets into the message.
func TestFailures(t *testing.T) {
	cases := []struct {
		name   string
		faults testserver.Faults
		edit   func(*tunnel.Config)
		class  error
		layer  error
	}{
		{"no l2tp", testserver.Faults{NoL2TP: true}, func(*tunnel.Config) {}, tunnel.ErrL2TP, l2tp.ErrTimeout},
		{"no ipcp", testserver.Faults{NoIPCP: true}, func(*tunnel.Config) {}, tunnel.ErrPPP, ppp.ErrNoIP},
		{"wrong psk", testserver.Faults{}, func(c *tunnel.Config) { c.PSK = []byte("not-the-psk-sEcReT1") }, tunnel.ErrIKE, ike.ErrAuthFailed},
		{"wrong password", testserver.Faults{}, func(c *tunnel.Config) { c.Password = []byte("not-the-password-sEcReT2") }, tunnel.ErrPPP, ppp.ErrAuthFailed},
		{"unreachable", testserver.Faults{}, func(c *tunnel.Config) {
			c.Server = deadAddr(t)
			c.ReplyTimeout = 2 * time.Second
		}, tunnel.ErrServerUnreachable, nil},
		{"no password", testserver.Faults{}, func(c *tunnel.Config) { c.Password = nil }, tunnel.ErrConfig, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The test server serves one client in its lifetime.
			cfg := clientConfig(t, startServer(t, testserver.Config{Faults: tc.faults}))
			tc.edit(&cfg)
			start := time.Now()
			c, err := tunnel.Dial(context.Background(), cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v to fail", d)
			}
			if !errors.Is(err, tc.class) {
				t.Errorf("error %q is not %v", err, tc.class)
			}
			if tc.layer != nil && !errors.Is(err, tc.layer) {
				t.Errorf("error %q is not %v", err, tc.layer)
			}
			for _, secret := range []string{"sEcReT1", "sEcReT2", "testpsk", "vpnpass"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

// deadAddr returns a loopback UDP address nobody listens on.
func deadAddr(t testing.TB) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

// TestServerDeletesIPsecSA: the server takes our only ESP SA down but keeps
// the ISAKMP SA. The client negotiates a new one by itself and the tunnel
// carries traffic again, without a reconnect.
func TestServerDeletesIPsecSA(t *testing.T) {
	srv := startServer(t, testserver.Config{})
	c := dial(t, clientConfig(t, srv))
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if b := get(t, hc, srv.URL("/hello.txt")); string(b) != srv.HelloBody() {
		t.Fatalf("before: %q", b)
	}
	if err := srv.DeleteIPsecSAs(); err != nil {
		t.Fatal(err)
	}
	waitIPsecSAs(t, srv, 2, "after the server deleted ours")
	if b := get(t, hc, srv.URL("/hello.txt")); string(b) != srv.HelloBody() {
		t.Fatalf("after: %q", b)
	}
	select {
	case <-c.Done():
		t.Fatalf("tunnel went down: %v", c.Err())
	default:
	}
}

// TestServerDeletesIKESA: the server deletes the ISAKMP SA alone (its
// lifetime ended) and leaves the IPsec SA up. The client negotiates a new IKE
// SA in place: a TCP connection opened before carries requests after, and
// the tunnel never goes down.
func TestServerDeletesIKESA(t *testing.T) {
	for _, pfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("pfs=%v", pfs), func(t *testing.T) { testServerDeletesIKESA(t, pfs) })
	}
}

func testServerDeletesIKESA(t *testing.T, requirePFS bool) {
	srv := startServer(t, testserver.Config{RequirePFS: requirePFS})
	c := dial(t, clientConfig(t, srv))
	conn, err := c.DialContext(context.Background(), "tcp", fmt.Sprintf("%s:%d", testserver.TargetName, testserver.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	ask := func(when string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL("/hello.txt"), nil)
		if err := req.Write(conn); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != srv.HelloBody() {
			t.Fatalf("%s: %q", when, b)
		}
	}
	ask("before")
	if err := srv.DeleteIKESA(); err != nil {
		t.Fatal(err)
	}
	waitIPsecSAs(t, srv, 2, "after the server deleted the IKE SA")
	ask("after, on the same TCP connection")
	select {
	case <-c.Done():
		t.Fatalf("tunnel went down: %v", c.Err())
	default:
	}
}

// waitIPsecSAs waits (10 s at most) until srv has established n IPsec SAs.
func waitIPsecSAs(t *testing.T, srv *testserver.Server, n int64, when string) {
	t.Helper()
	for i := 0; srv.IPsecSAs() < n; i++ {
		if i > 100 {
			t.Fatalf("%d IPsec SAs 10 s %s, want %d", srv.IPsecSAs(), when, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPFS: a server that requires PFS in Quick Mode (Libreswan's default
// pfs=yes) refuses our first Quick Mode; the client retries with PFS and
// connects. With --pfs no it fails as a refused proposal.
func TestPFS(t *testing.T) {
	srv := startServer(t, testserver.Config{RequirePFS: true})
	c := dial(t, clientConfig(t, srv))
	if got := c.Info().PFS; got != "MODP2048" {
		t.Errorf("PFS %q, want MODP2048", got)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if b := get(t, hc, srv.URL("/hello.txt")); string(b) != srv.HelloBody() {
		t.Fatalf("through the PFS SA: %q", b)
	}

	cfg := clientConfig(t, startServer(t, testserver.Config{RequirePFS: true}))
	cfg.PFS = ike.PFSOff
	_, err := tunnel.Dial(context.Background(), cfg)
	if !errors.Is(err, tunnel.ErrIKE) || !errors.Is(err, ike.ErrNoProposalChosen) {
		t.Fatalf("--pfs no against a server that requires PFS: %v", err)
	}
	t.Log(err)
}

// TestServerFrozen: the server goes silent (frozen, or its NAT mapping
// gone). While it was alive it answered our R-U-THEREs and the tunnel
// stayed up; once frozen, dead-peer detection reports IKE/ESP as the
// silent layer within about 3.5 intervals, as the server being unreachable
// (so `up` reconnects).
func TestServerFrozen(t *testing.T) {
	const interval = 500 * time.Millisecond
	srv := startServer(t, testserver.Config{})
	cfg := clientConfig(t, srv)
	cfg.DPDInterval = interval
	c := dial(t, cfg)
	select {
	case <-c.Done():
		t.Fatalf("tunnel went down while the server was alive: %v", c.Err())
	case <-time.After(6 * interval): // idle: R-U-THEREs answered
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	for c.Err() == nil {
		if time.Since(frozen) > 20*interval {
			t.Fatal("a frozen server was not noticed")
		}
		time.Sleep(interval / 50)
	}
	took := time.Since(frozen)
	err := c.Err()
	if !errors.Is(err, ike.ErrPeerDead) || !errors.Is(err, tunnel.ErrServerUnreachable) || !strings.Contains(err.Error(), "IKE/ESP") {
		t.Fatalf("err = %v, want ike.ErrPeerDead, class unreachable, layer IKE/ESP", err)
	}
	if took > 7*interval/2 {
		t.Errorf("noticed after %v, want within about 3 intervals (%v)", took, 3*interval)
	}
	select {
	case <-c.Done(): // no goodbyes to a dead server: teardown is quick
	case <-time.After(3 * time.Second):
		t.Error("the tunnel was not down 3 s after the server was found dead")
	}
	t.Logf("frozen server noticed after %v: %v", took.Round(time.Millisecond), err)
}

// TestServerRekeysConstantly: the server starts a new Quick Mode every
// 50 ms from its first IPsec SA on, so rekeys land while the client sets
// up L2TP and PPP. Every new SA must be installed at once (the server
// switches to it), during setup as afterwards: the tunnel comes up and
// carries requests.
func TestServerRekeysConstantly(t *testing.T) {
	srv := startServer(t, testserver.Config{Faults: testserver.Faults{RekeyEvery: 50 * time.Millisecond}})
	c := dial(t, clientConfig(t, srv))
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for i := 0; i < 10; i++ {
		resp, err := hc.Get(srv.URL("/hello.txt"))
		if err != nil {
			t.Fatalf("request %d after %d server rekeys: %v", i, srv.IPsecSAs()-1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != srv.HelloBody() {
			t.Fatalf("request %d: %q", i, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := srv.IPsecSAs(); n < 5 {
		t.Errorf("only %d IPsec SAs: the server did not rekey", n)
	}
	t.Logf("%d IPsec SAs", srv.IPsecSAs())
}

// TestClientRekeysIKESA: with a 3 s ISAKMP SA lifetime the client rekeys
// its IKE SA make-before-break (a second Main Mode while the first SA
// carries traffic, then Delete of the old one) again and again; the test
// server's responder keeps the IPsec SA under the new IKE SA, and a TCP
// connection opened before carries requests after.
func TestClientRekeysIKESA(t *testing.T) {
	srv := startServer(t, testserver.Config{})
	cfg := clientConfig(t, srv)
	cfg.Phase1Lifetime = 3 * time.Second
	c := dial(t, cfg)
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	reused := false
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	get := func(when string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL("/hello.txt"), nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != srv.HelloBody() {
			t.Fatalf("%s: %q", when, b)
		}
	}
	get("before")
	for i := 0; srv.IKESAs() < 3; i++ {
		if i > 100 {
			t.Fatalf("%d IKE SAs after 10 s, want 3 (two rekeys)", srv.IKESAs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	get("after two IKE SA rekeys, on the same connection")
	if !reused {
		t.Error("the request after the rekeys did not reuse the connection opened before")
	}
	select {
	case <-c.Done():
		t.Fatalf("tunnel went down: %v", c.Err())
	default:
	}
	if n := srv.IPsecSAs(); n != 1 {
		t.Errorf("%d IPsec SAs: the IKE rekey should move the IPsec SA, not renegotiate it", n)
	}
}

// TestClientRekeysOnSequenceNumbers: an outbound SA whose sequence numbers
// run low is rekeyed make-before-break (RFC 4303 §3.3.3), here with the
// soft limit at 300 packets: an 8 MiB upload (~7,000 packets from us)
// crosses it again and again, each time a new IPsec SA takes over (once the
// server sends on it: see datapath.Path.nextOut), and the upload arrives
// intact on the same tunnel.
func TestClientRekeysOnSequenceNumbers(t *testing.T) {
	srv := startServer(t, testserver.Config{})
	cfg := clientConfig(t, srv)
	tunnel.SetESPSeqSoftLimit(&cfg, 300)
	c := dial(t, cfg)
	uploadIntact(t, c, srv, "l2tpproxy sequence numbers ")
	t.Logf("%d IPsec SAs", srv.IPsecSAs())
	if n := srv.IPsecSAs(); n < 4 {
		t.Errorf("%d IPsec SAs after ~7,000 packets with a 300-packet soft limit, want >= 4", n)
	}
}

// uploadIntact posts 8 MiB of text repeated to the server's /upload through
// c and fails the test unless it arrives intact and the tunnel stays up. It
// returns the bytes sent.
func uploadIntact(t *testing.T, c *tunnel.Client, srv *testserver.Server, text string) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	body := bytes.Repeat([]byte(text), (8<<20)/len(text))
	sum := sha256.Sum256(body)
	resp, err := hc.Post(srv.URL("/upload"), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x\n", len(body), sum); string(got) != want {
		t.Fatalf("the server got %q, we sent %q", got, want)
	}
	select {
	case <-c.Done():
		t.Fatalf("tunnel went down: %v", c.Err())
	default:
	}
	return len(body)
}
