package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mapResolver resolves a fixed set of names; anything else is not found.
type mapResolver struct {
	m     map[string]netip.Addr
	calls atomic.Int64
}

var errNotFound = errors.New("test resolver: not found")

func (r *mapResolver) LookupHost(_ context.Context, host string) ([]netip.Addr, error) {
	r.calls.Add(1)
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if a, ok := r.m[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, fmt.Errorf("%w: %s", errNotFound, host)
}

// recordingDialer dials loopback with net.Dialer, resolving names through
// its Resolver, and records what it was asked to dial.
type recordingDialer struct {
	r     Resolver
	mu    sync.Mutex
	addrs []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, address)
	d.mu.Unlock()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := d.r.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, net.JoinHostPort(addrs[0].String(), port))
}

func (d *recordingDialer) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

func newResolver() *mapResolver {
	return &mapResolver{m: map[string]netip.Addr{"svc.internal": netip.MustParseAddr("127.0.0.1")}}
}

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startServe runs serve on a loopback listener and checks that it returns
// nil after the test cancels its context.
func startServe(t testing.TB, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// startHashEcho serves: read everything until EOF (client half-close),
// then reply with the hex SHA-256 of what was read and close.
func startHashEcho(t testing.TB) (port string) {
	t.Helper()
	ln := listenLoopback(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
			}()
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// socksConnect performs a SOCKS5 no-auth CONNECT to host:port (sent as a
// domain name unless host is an IPv4 literal) and returns the reply code.
func socksConnect(t testing.TB, proxyAddr, host string, port uint16) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("method selection: % x %v", m, err)
	}
	req := []byte{5, 1, 0}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		req = append(req, 1)
		req = append(req, a.AsSlice()...)
	} else {
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	if rep[0] != 5 {
		t.Fatalf("reply version %d", rep[0])
	}
	var skip int
	switch rep[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	default:
		t.Fatalf("reply ATYP %d", rep[3])
	}
	if _, err := io.ReadFull(c, make([]byte, skip)); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c, rep[1]
}

func portOf(t testing.TB, p string) uint16 {
	var n uint16
	if _, err := fmt.Sscan(p, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// hashRoundTrip sends data, half-closes, and expects the hex SHA-256 back.
func hashRoundTrip(t *testing.T, c net.Conn, data []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		c.Write(data)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	want := sha256.Sum256(data)
	if string(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("hash mismatch: got %q", got)
	}
}

func TestSOCKS5ConnectDomainName(t *testing.T) {
	res := newResolver()
	d := &recordingDialer{r: res}
	addr := startServe(t, NewSOCKS5(d, res, nil).Serve)
	port := startHashEcho(t)

	c, rep := socksConnect(t, addr, "svc.internal", portOf(t, port))
	defer c.Close()
	if rep != 0 {
		t.Fatalf("reply %d, want 0 (succeeded)", rep)
	}
	hashRoundTrip(t, c, randBytes(t, 2<<20+7))

	if res.calls.Load() == 0 {
		t.Error("domain name was not resolved through our Resolver")
	}
	for _, a := range d.dialed() {
		if strings.Contains(a, "svc.internal") {
			t.Errorf("dialer got unresolved name %q", a)
		}
	}
}

func TestSOCKS5Errors(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, nil).Serve)

	// Unknown name: our resolver says not found -> host unreachable (4).
	c, rep := socksConnect(t, addr, "nowhere.internal", 80)
	c.Close()
	if rep != 4 {
		t.Errorf("unknown name: reply %d, want 4", rep)
	}
	// Closed port -> connection refused (5).
	ln := listenLoopback(t)
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c, rep = socksConnect(t, addr, "127.0.0.1", uint16(closedPort))
	c.Close()
	if rep != 5 {
		t.Errorf("closed port: reply %d, want 5", rep)
	}
}

// TestSOCKS5RefusesBind: BIND is not supported (reply 7, RFC 1928 §6).
func TestSOCKS5RefusesBind(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewSOCKS5(&recordingDialer{r: res}, res, nil).Serve)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	io.ReadFull(c, make([]byte, 2))
	c.Write([]byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80})
	var rep [2]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	if rep[1] != 7 {
		t.Errorf("BIND reply %d, want 7 (command not supported)", rep[1])
	}
}

func connectViaHTTP(t testing.TB, proxyAddr, target string) (net.Conn, *http.Response, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c, resp, br
}

func TestHTTPConnect(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	port := startHashEcho(t)

	c, resp, br := connectViaHTTP(t, addr, "svc.internal:"+port)
	defer c.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d unexpected bytes after 200", br.Buffered())
	}
	hashRoundTrip(t, c, randBytes(t, 3<<20))
}

func TestHTTPConnectPipelinedData(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	port := startHashEcho(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// CONNECT and the first payload bytes in one write, then half-close.
	payload := "pipelined-hello"
	fmt.Fprintf(c, "CONNECT svc.internal:%s HTTP/1.1\r\nHost: x\r\n\r\n%s", port, payload)
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	got, _ := io.ReadAll(br)
	want := sha256.Sum256([]byte(payload))
	if string(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("pipelined bytes lost: got %q", got)
	}
}

func TestHTTPConnectDialFailure(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	c, resp, _ := connectViaHTTP(t, addr, "nowhere.internal:443")
	defer c.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "nowhere.internal:443") {
		t.Fatalf("status %d body %q, want 502 naming the target", resp.StatusCode, body)
	}
}

// upstream is an httptest server on loopback that counts new connections.
func newUpstream(t testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// countingListener counts accepted client connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func proxyClient(proxyAddr string) *http.Client {
	u := &url.URL{Scheme: "http", Host: proxyAddr}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true},
		Timeout:   30 * time.Second,
	}
}

func TestHTTPGetKeepAliveAndHopHeaders(t *testing.T) {
	var sawHop atomic.Value
	up, upConns := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Secret", "Proxy-Authorization", "Proxy-Connection", "Keep-Alive"} {
			if r.Header.Get(k) != "" {
				sawHop.Store(k)
			}
		}
		if r.URL.IsAbs() {
			sawHop.Store("absolute URI forwarded to origin")
		}
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		fmt.Fprintf(w, "path=%s query=%s", r.URL.Path, r.URL.RawQuery)
	})
	res := newResolver()
	ln := &countingListener{Listener: listenLoopback(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go NewHTTP(&recordingDialer{r: res}, nil).Serve(ctx, ln)

	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	client := proxyClient(ln.Addr().String())
	for i := range 3 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://svc.internal:%s/p%d?a=1;b=2", upPort, i), nil)
		req.Header.Set("Connection", "X-Secret")
		req.Header.Set("X-Secret", "hop")
		req.Header.Set("Proxy-Connection", "keep-alive")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("path=/p%d query=a=1;b=2", i); string(body) != want {
			t.Errorf("body %q, want %q", body, want)
		}
		if resp.Header.Get("X-Resp-Hop") != "" {
			t.Error("response hop-by-hop header (named in Connection) forwarded")
		}
	}
	if v := sawHop.Load(); v != nil {
		t.Errorf("upstream saw %v", v)
	}
	if n := ln.n.Load(); n != 1 {
		t.Errorf("client opened %d connections to the proxy, want 1 (keep-alive)", n)
	}
	if n := upConns.Load(); n != 1 {
		t.Errorf("proxy opened %d upstream connections, want 1 (keep-alive)", n)
	}
}

func TestHTTPPostStreaming(t *testing.T) {
	up, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		// Stream a large response back too.
		w.Header().Set("X-Upload-SHA256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("X-Upload-Len", fmt.Sprint(n))
		w.WriteHeader(201)
		chunk := make([]byte, 64<<10)
		for i := range 32 {
			for j := range chunk {
				chunk[j] = byte(i + j)
			}
			w.Write(chunk)
		}
	})
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())

	data := randBytes(t, 4<<20+3)
	pr, pw := io.Pipe()
	go func() {
		// Unknown length: the client sends it chunked.
		for off := 0; off < len(data); off += 100_000 {
			pw.Write(data[off:min(off+100_000, len(data))])
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://svc.internal:"+upPort+"/upload", pr)
	resp, err := proxyClient(addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := sha256.Sum256(data)
	if resp.StatusCode != 201 || resp.Header.Get("X-Upload-SHA256") != hex.EncodeToString(want[:]) {
		t.Fatalf("status %d upload hash %q len %s", resp.StatusCode, resp.Header.Get("X-Upload-SHA256"), resp.Header.Get("X-Upload-Len"))
	}
	h := sha256.New()
	exp := sha256.New()
	chunk := make([]byte, 64<<10)
	for i := range 32 {
		for j := range chunk {
			chunk[j] = byte(i + j)
		}
		exp.Write(chunk)
	}
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	if string(h.Sum(nil)) != string(exp.Sum(nil)) {
		t.Fatal("streamed response corrupted")
	}
}

func TestHTTPDialFailure502(t *testing.T) {
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	ln := listenLoopback(t)
	closed := ln.Addr().String()
	ln.Close()
	for _, u := range []string{"http://nowhere.internal/", "http://" + closed + "/"} {
		resp, err := proxyClient(addr).Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "proxy: cannot reach") {
			t.Errorf("%s: status %d body %q, want 502 with explanation", u, resp.StatusCode, body)
		}
	}
	// A non-proxy (origin-form) request is refused with 400.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: status %d, want 400", resp.StatusCode)
	}
}

// TestServeClosesTunnels: cancelling Serve's context tears down live
// CONNECT tunnels and SOCKS sessions.
func TestServeClosesTunnels(t *testing.T) {
	res := newResolver()
	// Upstream that never sends anything.
	ln := listenLoopback(t)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, kind := range []string{"http", "socks5"} {
		pl := listenLoopback(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var c net.Conn
		if kind == "http" {
			go func() { done <- NewHTTP(&recordingDialer{r: res}, nil).Serve(ctx, pl) }()
			var resp *http.Response
			c, resp, _ = connectViaHTTP(t, pl.Addr().String(), "svc.internal:"+port)
			if resp.StatusCode != 200 {
				t.Fatal(resp.Status)
			}
		} else {
			go func() { done <- NewSOCKS5(&recordingDialer{r: res}, res, nil).Serve(ctx, pl) }()
			var rep byte
			c, rep = socksConnect(t, pl.Addr().String(), "svc.internal", portOf(t, port))
			if rep != 0 {
				t.Fatal(rep)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Serve = %v", kind, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: tunnel still open after Serve returned: %v", kind, err)
		}
		c.Close()
	}
}

// TestHTTPTruncatedUpstream: an upstream that dies mid-body must produce an
// error at the client, not a complete-looking short body.
func TestHTTPTruncatedUpstream(t *testing.T) {
	up, _ := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		brw.Flush()
	})
	res := newResolver()
	addr := startServe(t, NewHTTP(&recordingDialer{r: res}, nil).Serve)
	resp, err := proxyClient(addr).Get(up.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("truncated upstream body read without error: %q", body)
	}
}
