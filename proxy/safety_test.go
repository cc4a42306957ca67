package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCredentialsValid(t *testing.T) {
	c := NewCredentials("alice", []byte("s3cret"))
	for _, tc := range []struct {
		user, pass string
		want       bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cre", false},
		{"alice", "s3cret ", false},
		{"Alice", "s3cret", false},
		{"", "", false},
		{"alice", "", false},
		{"bob", "s3cret", false},
	} {
		if got := c.Valid(tc.user, tc.pass); got != tc.want {
			t.Errorf("Valid(%q, %q) = %v, want %v", tc.user, tc.pass, got, tc.want)
		}
	}
}

// socksAuthConnect does the RFC 1929 handshake and a CONNECT; it returns
// the auth status (0 ok) and, if authenticated, the CONNECT reply.
func socksAuthConnect(t *testing.T, addr, user, pass string, port uint16) (status, rep byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 2})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 2} {
		t.Fatalf("method selection % x %v, want 05 02", m, err)
	}
	msg := []byte{1, byte(len(user))}
	msg = append(msg, user...)
	msg = append(msg, byte(len(pass)))
	msg = append(msg, pass...)
	c.Write(msg)
	var st [2]byte
	if _, err := io.ReadFull(c, st[:]); err != nil {
		t.Fatalf("auth status: %v", err)
	}
	if st[1] != 0 {
		return st[1], 0
	}
	req := binary.BigEndian.AppendUint16([]byte{5, 1, 0, 1, 127, 0, 0, 1}, port)
	c.Write(req)
	var r [10]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("connect reply: %v", err)
	}
	return 0, r[1]
}

func TestSOCKS5Auth(t *testing.T) {
	res := newResolver()
	opts := &Options{Credentials: NewCredentials("alice", []byte("s3cret"))}
	addr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, opts).Serve)
	port := portOf(t, startHashEcho(t))

	if st, rep := socksAuthConnect(t, addr, "alice", "s3cret", port); st != 0 || rep != 0 {
		t.Errorf("right credentials: status %d reply %d, want 0 0", st, rep)
	}
	if st, _ := socksAuthConnect(t, addr, "alice", "wrong", port); st == 0 {
		t.Error("wrong password accepted")
	}
	if st, _ := socksAuthConnect(t, addr, "mallory", "s3cret", port); st == 0 {
		t.Error("wrong user accepted")
	}
	// A client offering only "no authentication" gets 0xFF.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0xff} {
		t.Errorf("no-auth client: % x %v, want 05 ff", m, err)
	}
}

func TestHTTPAuth(t *testing.T) {
	up, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Error("Proxy-Authorization forwarded upstream")
		}
		io.WriteString(w, "ok")
	})
	res := newResolver()
	opts := &Options{Credentials: NewCredentials("alice", []byte("s3cret"))}
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, opts).Serve)

	get := func(u *url.Userinfo) (*http.Response, string) {
		pu := &url.URL{Scheme: "http", Host: addr, User: u}
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
		resp, err := hc.Get(up.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, u := range []*url.Userinfo{nil, url.UserPassword("alice", "wrong"), url.UserPassword("bob", "s3cret")} {
		resp, _ := get(u)
		if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic ") {
			t.Errorf("%v: status %d, Proxy-Authenticate %q; want 407 Basic", u, resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
		}
	}
	if resp, body := get(url.UserPassword("alice", "s3cret")); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("right credentials: %d %q", resp.StatusCode, body)
	}

	// CONNECT needs them too.
	port := startHashEcho(t)
	c, resp, _ := connectViaHTTP(t, addr, "127.0.0.1:"+port)
	c.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("CONNECT without credentials: %d, want 407", resp.StatusCode)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n", port, port)
	resp, err = http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("CONNECT with credentials: %v %v", resp, err)
	}
}

// TestHandshakeDeadline: a client that sends one byte and then nothing is
// dropped after the handshake timeout, on both proxies; one that finishes
// in time keeps its connection for as long as it likes.
func TestHandshakeDeadline(t *testing.T) {
	res := newResolver()
	opts := &Options{HandshakeTimeout: 200 * time.Millisecond}
	socksAddr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, opts).Serve)
	httpAddr := startServe(t, NewHTTP(&recordingDialer{r: res}, opts).Serve)
	for name, tc := range map[string]struct{ addr, first string }{
		"socks5": {socksAddr, "\x05"},
		"http":   {httpAddr, "G"},
	} {
		c, err := net.Dial("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(tc.first))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: stalled handshake not closed within 5 s", name)
		} else if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("%s: closed after %v, before the 200 ms timeout", name, d)
		}
		c.Close()
	}
	// A CONNECT tunnel outlives the handshake timeout.
	port := portOf(t, startHashEcho(t))
	c, rep := socksConnect(t, socksAddr, "127.0.0.1", port)
	if rep != 0 {
		t.Fatal(rep)
	}
	time.Sleep(400 * time.Millisecond)
	hashRoundTrip(t, c, randBytes(t, 1000))
	c.Close()
}

// TestConnectionLimit: beyond the cap, SOCKS5 clients get "no acceptable
// methods" and HTTP clients 503; a freed slot is usable again.
func TestConnectionLimit(t *testing.T) {
	res := newResolver()
	lim := NewLimiter(2)
	opts := &Options{Limiter: lim}
	socksAddr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, opts).Serve)
	httpAddr := startServe(t, NewHTTP(&recordingDialer{r: res}, opts).Serve)

	// Two held connections fill the shared cap.
	var held []net.Conn
	for _, a := range []string{socksAddr, httpAddr} {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, func() bool { return len(lim.slots) == 2 })

	c, err := net.Dial("tcp", socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{5, 1, 0})
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "\x05\xff" {
		t.Errorf("SOCKS5 beyond the cap: % x, want 05 ff", b)
	}
	resp, err := proxyClient(httpAddr).Get("http://127.0.0.1:1/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many") {
		t.Errorf("HTTP beyond the cap: %d %q, want 503", resp.StatusCode, body)
	}

	held[0].Close()
	waitFor(t, func() bool { return len(lim.slots) == 1 })
	port := portOf(t, startHashEcho(t))
	c, rep := socksConnect(t, socksAddr, "127.0.0.1", port)
	if rep != 0 {
		t.Fatalf("after a slot was freed: reply %d", rep)
	}
	c.Close()
	held[1].Close()
}

// waitFor polls cond (bounded: 5 s).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPContentLengthAndTransferEncoding: a request with both is framed
// by Transfer-Encoding and the connection is closed after the response
// (RFC 9112 §6.1); a normal request keeps it open.
func TestHTTPContentLengthAndTransferEncoding(t *testing.T) {
	up, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "body=%q cl=%q", b, r.Header.Get("Content-Length"))
	})
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// First a normal request: kept alive.
	fmt.Fprintf(c, "POST %s/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", up.URL)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if resp.Close {
		t.Error("normal request: connection closed")
	}
	fmt.Fprintf(c, "POST %s/ HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", up.URL)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != `body="abc" cl=""` {
		t.Errorf("body %q", body)
	}
	if !resp.Close {
		t.Error("request with Content-Length and Transfer-Encoding: connection not closed")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
}

func TestFramingSniffer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nhost: x\r\ncontent-length:1\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", false},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		// Different messages, one field each.
		{"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nContent-Lengthy: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	} {
		// Byte by byte and whole: the same answer.
		var s1, s2 framingSniffer
		s1.cand, s2.cand = 3, 3
		got1 := s1.scan([]byte(tc.in))
		got2 := false
		for i := range len(tc.in) {
			got2 = s2.scan([]byte{tc.in[i]}) || got2
		}
		if got1 != tc.want || got2 != tc.want {
			t.Errorf("%q: %v/%v, want %v", tc.in, got1, got2, tc.want)
		}
	}
}

// TestSOCKS5UDPAssociate: a round trip to a UDP echo, by address and by
// name (resolved through the Resolver); datagrams with FRAG != 0 and
// datagrams from another source are dropped; the association ends with
// its control connection.
func TestSOCKS5UDPAssociate(t *testing.T) {
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	echoPort := uint16(echo.LocalAddr().(*net.UDPAddr).Port)

	res := newResolver()
	addr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, nil).Serve)
	ctrl, relay := socksAssociate(t, addr)
	defer ctrl.Close()

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(hdr []byte, payload string) {
		if _, err := pc.WriteToUDP(append(hdr, payload...), relay); err != nil {
			t.Fatal(err)
		}
	}
	ipHdr := binary.BigEndian.AppendUint16([]byte{0, 0, 0, 1, 127, 0, 0, 1}, echoPort)
	nameHdr := binary.BigEndian.AppendUint16(append([]byte{0, 0, 0, 3, byte(len("svc.internal"))}, "svc.internal"...), echoPort)
	fragHdr := append([]byte(nil), ipHdr...)
	fragHdr[2] = 1

	send(fragHdr, "fragment")
	send(ipHdr, "by-address")
	h, payload := readUDPReply(t, pc)
	if string(payload) != "echo:by-address" || h.Host != "127.0.0.1" || h.Port != echoPort {
		t.Fatalf("reply %+v %q", h, payload)
	}
	send(nameHdr, "by-name")
	if _, payload := readUDPReply(t, pc); string(payload) != "echo:by-name" {
		t.Fatalf("by name: %q", payload)
	}

	// Another source port (not the client's first): dropped.
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.WriteToUDP(append(append([]byte(nil), ipHdr...), "intruder"...), relay)
	other.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := other.ReadFromUDP(make([]byte, 100)); err == nil {
		t.Errorf("datagram from another port relayed: %d bytes back", n)
	}
	// The fragment was dropped: the next reply is a fresh one.
	send(ipHdr, "again")
	if _, payload := readUDPReply(t, pc); string(payload) != "echo:again" {
		t.Fatalf("after the fragment: %q (fragment relayed?)", payload)
	}

	// Closing the control connection ends the association.
	ctrl.Close()
	time.Sleep(100 * time.Millisecond)
	send(ipHdr, "after close")
	pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := pc.ReadFromUDP(make([]byte, 100)); err == nil {
		t.Errorf("relay still answers after its control connection closed (%d bytes)", n)
	}
}

// socksAssociate opens a control connection and returns the relay address.
func socksAssociate(t *testing.T, addr string) (net.Conn, *net.UDPAddr) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("method selection % x %v", m, err)
	}
	c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	if rep[1] != 0 || rep[3] != 1 {
		t.Fatalf("UDP ASSOCIATE reply % x", rep)
	}
	relay := &net.UDPAddr{IP: net.IP(rep[4:8]), Port: int(binary.BigEndian.Uint16(rep[8:]))}
	if !relay.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("relay bound to %v, want the control connection's local address 127.0.0.1", relay.IP)
	}
	c.SetDeadline(time.Time{})
	return c, relay
}

func readUDPReply(t *testing.T, pc *net.UDPConn) (UDPHeader, []byte) {
	t.Helper()
	buf := make([]byte, 4096)
	n, _, err := pc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no UDP reply: %v", err)
	}
	h, payload, err := ParseUDPDatagram(buf[:n])
	if err != nil {
		t.Fatalf("reply header: %v", err)
	}
	return h, payload
}

func FuzzParseUDPDatagram(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 10, 0, 0, 1, 0, 53, 'x'})
	f.Add([]byte{0, 0, 0, 3, 3, 'a', '.', 'b', 0, 80})
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})
	f.Add([]byte{0, 0, 1, 1, 10, 0, 0, 1, 0, 53})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseUDPDatagram(b)
		if err != nil {
			return
		}
		if len(payload) > len(b) || h.Host == "" {
			t.Fatalf("%+v %d", h, len(payload))
		}
	})
}

func FuzzFramingSniffer(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 7)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var whole, parts framingSniffer
		whole.cand, parts.cand = 3, 3
		w := whole.scan(b)
		if split < 0 {
			split = -split
		}
		split %= len(b) + 1
		p := parts.scan(b[:split])
		p = parts.scan(b[split:]) || p
		if w != p {
			t.Fatalf("split at %d changes the answer: %v vs %v", split, w, p)
		}
	})
}

// TestRefusedByRoutes: with --others refuse, destinations outside the
// routes get SOCKS5 reply 2 and HTTP 403 naming the rule, and nothing is
// dialled.
func TestRefusedByRoutes(t *testing.T) {
	routes, _ := ParseRoutes([]string{"10.0.0.0/8"}, []string{"corp.example"}, "refuse")
	tun, direct := &fakeDialer{}, &fakeDialer{}
	rt := &Router{Routes: routes, Tunnel: tun, Direct: direct, Host: hostDNS{}}
	socksAddr := startServe(t, NewSOCKS5(rt, nil, nil).Serve)
	httpAddr := startServe(t, NewHTTP(rt, nil).Serve)

	c, rep := socksConnect(t, socksAddr, "192.0.2.1", 80)
	c.Close()
	if rep != 2 {
		t.Errorf("SOCKS5: reply %d, want 2 (not allowed by ruleset)", rep)
	}
	resp, err := proxyClient(httpAddr).Get("http://192.0.2.1/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "others are refused") {
		t.Errorf("HTTP: %d %q, want 403", resp.StatusCode, body)
	}
	c, resp, _ = connectViaHTTP(t, httpAddr, "192.0.2.1:443")
	c.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT: %d, want 403", resp.StatusCode)
	}
	if tun.got != "" || direct.got != "" {
		t.Errorf("dialled %q / %q", tun.got, direct.got)
	}
	// A name under the domain goes to the tunnel dialer, by name.
	c, _ = socksConnect(t, socksAddr, "wiki.corp.example", 80)
	c.Close()
	if tun.got != "wiki.corp.example:80" {
		t.Errorf("tunnel dialled %q, want the name", tun.got)
	}
}

// TestHTTPUpgrade: an Upgrade request (WebSocket over http://) is passed
// through: 101, then bytes both ways on the same connection.
func TestHTTPUpgrade(t *testing.T) {
	up, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	})
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", up.URL)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%v %v", resp, err)
	}
	io.WriteString(c, "hi\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:hi\n" {
		t.Fatalf("after the upgrade: %q %v", line, err)
	}
}
