package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// fakeTunnel is a tunnelDialer that names itself in its errors.
type fakeTunnel struct{ name string }

var errFakeDial = errors.New("fake dial")

func (f fakeTunnel) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.Join(errFakeDial, errors.New(f.name))
}

func (f fakeTunnel) LookupHost(context.Context, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
}

// Done: a fake tunnel never ends by itself.
func (f fakeTunnel) Done() <-chan struct{} { return nil }

// dialVia returns which fake tunnel a dial went through ("" if none) and
// the error it got otherwise.
func dialVia(cur *currentTunnel, ctx context.Context) (string, error) {
	_, err := cur.DialContext(ctx, "tcp", "192.0.2.1:80")
	if errors.Is(err, errFakeDial) {
		return strings.TrimPrefix(err.Error(), "fake dial\n"), nil
	}
	return "", err
}

// TestCurrentTunnelWait: while the tunnel is down, a new connection waits
// up to the configured time for the next one, then fails with the reason;
// with a tunnel up it goes through at once. Fake time (synctest).
func TestCurrentTunnelWait(t *testing.T) {
	reason := errors.New("IKE: no reply from 192.0.2.1:500 within 8s")

	t.Run("up", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(15 * time.Second)
			cur.setUp(fakeTunnel{"one"})
			start := time.Now()
			if via, err := dialVia(cur, t.Context()); via != "one" || err != nil || time.Since(start) != 0 {
				t.Errorf("via %q, %v after %v; want tunnel one at once", via, err, time.Since(start))
			}
		})
	})

	t.Run("waits and goes through", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(15 * time.Second)
			cur.setUp(fakeTunnel{"one"})
			cur.setDown(errors.New("L2TP: the server closed the L2TP connection"))
			start := time.Now()
			var via string
			var err error
			done := make(chan struct{})
			go func() { via, err = dialVia(cur, t.Context()); close(done) }()
			time.Sleep(5 * time.Second) // fake time: the outage
			synctest.Wait()
			select {
			case <-done:
				t.Fatalf("returned during the outage: %q, %v", via, err)
			default:
			}
			cur.setDown(reason) // a reconnect attempt failed: still down
			cur.setUp(fakeTunnel{"two"})
			<-done
			if via != "two" || err != nil || time.Since(start) != 5*time.Second {
				t.Errorf("via %q, %v after %v; want tunnel two after 5s", via, err, time.Since(start))
			}
		})
	})

	t.Run("times out with the reason", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(15 * time.Second)
			cur.setUp(fakeTunnel{"one"})
			cur.setDown(errors.New("closed"))
			time.Sleep(3 * time.Second)
			cur.setDown(reason)
			start := time.Now()
			via, err := dialVia(cur, t.Context())
			if via != "" || !errors.Is(err, errTunnelDown) || !errors.Is(err, reason) || time.Since(start) != 15*time.Second {
				t.Fatalf("via %q, %v after %v; want errTunnelDown wrapping the last reconnect error after 15s", via, err, time.Since(start))
			}
			if want := "the VPN tunnel is down (reconnecting) for 18s, waited 15s; last error: " + reason.Error(); err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if _, err := cur.LookupHost(t.Context(), "intranet.example"); !errors.Is(err, reason) {
				t.Errorf("LookupHost: %v, want the reason", err)
			}
		})
	})

	t.Run("down again before the waiter got it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(10 * time.Second)
			cur.setDown(reason)
			start := time.Now()
			var err error
			done := make(chan struct{})
			go func() { _, err = dialVia(cur, t.Context()); close(done) }()
			synctest.Wait()
			// Up and down again with the waiter not yet running: it must
			// see the tunnel down and go on waiting, not dial a nil one.
			cur.mu.Lock()
			cur.c = nil
			close(cur.up)
			cur.up = make(chan struct{})
			cur.mu.Unlock()
			<-done
			if !errors.Is(err, errTunnelDown) || time.Since(start) != 10*time.Second {
				t.Errorf("%v after %v, want errTunnelDown after 10s", err, time.Since(start))
			}
		})
	})

	t.Run("no wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(0)
			cur.setDown(reason)
			start := time.Now()
			if _, err := dialVia(cur, t.Context()); !errors.Is(err, reason) || time.Since(start) != 0 {
				t.Errorf("%v after %v, want the reason at once", err, time.Since(start))
			}
		})
	})

	t.Run("caller gives up first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			cur := newCurrentTunnel(time.Minute)
			cur.setDown(reason)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if _, err := dialVia(cur, ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, reason) {
				t.Errorf("%v, want the deadline and the reason", err)
			}
		})
	})
}

// logWatch is a log sink that tells waiters when something was written.
type logWatch struct {
	syncBuffer
	mu    sync.Mutex
	wrote chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{wrote: make(chan struct{})} }

func (w *logWatch) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	w.mu.Lock()
	close(w.wrote)
	w.wrote = make(chan struct{})
	w.mu.Unlock()
	return n, err
}

// waitFor waits until the log contains s n times (bounded).
func (w *logWatch) waitFor(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		wrote := w.wrote
		w.mu.Unlock()
		if strings.Count(w.String(), s) >= n {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("no %q (x%d) in the log within %v:\n%s", s, n, timeout, w.String())
		}
	}
}

// startServeWait runs serve against srv with the given connect wait and a
// short reply timeout (so a reconnect attempt to a stopped server fails in
// well under a second), both proxies on ephemeral loopback ports.
func startServeWait(t *testing.T, srv *testserver.Server, wait time.Duration) (*running, *logWatch) {
	t.Helper()
	lw := newLogWatch()
	r := &running{log: &lw.syncBuffer, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(lw, nil))
	cfg := tunnel.Config{
		Server:       srv.IKEAddr().String(),
		NATTPort:     srv.NATTAddr().Port(),
		PSK:          []byte("testpsk"),
		User:         "vpnuser",
		Password:     []byte("vpnpass"),
		ReplyTimeout: 300 * time.Millisecond,
		Logger:       log,
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	ready := make(chan [2]net.Addr, 1)
	go func() {
		r.done <- serve(ctx, serveConfig{Tunnel: cfg, SOCKS5: "127.0.0.1:0", HTTP: "127.0.0.1:0", Log: log, ConnectWait: wait,
			Ready: func(s, h net.Addr) { ready <- [2]net.Addr{s, h} }})
	}()
	select {
	case a := <-ready:
		r.socks, r.http = a[0], a[1]
	case err := <-r.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	return r, lw
}

// get fetches u through the proxy with a client timeout well above the
// connect wait, and returns status, body and how long it took.
func get(scheme string, proxyAddr net.Addr, u string) (int, string, time.Duration, error) {
	pu, _ := url.Parse(scheme + "://" + proxyAddr.String())
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 60 * time.Second}
	start := time.Now()
	resp, err := hc.Get(u)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start), err
}

// TestConnectWaitSucceeds: connections opened during an outage (server
// restart) wait for the reconnect and go through, by address over SOCKS5
// and by name (the VPN's DNS) over HTTP; the reconnect is logged with its
// cause and duration.
func TestConnectWaitSucceeds(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r, lw := startServeWait(t, srv, 30*time.Second)
	defer r.stop(t)
	if _, b, _, err := get("socks5h", r.socks, srv.URL("/hello.txt")); err != nil || b != srv.HelloBody() {
		t.Fatalf("before the outage: %q, %v", b, err)
	}

	srv.Close()
	lw.waitFor(t, "tunnel went down, reconnecting", 1, 10*time.Second)
	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, 2)
	byName := strings.Replace(srv.URL("/hello.txt"), testserver.ServerIP.String(), testserver.TargetName, 1)
	for _, c := range []struct {
		scheme string
		addr   net.Addr
		url    string
	}{{"socks5h", r.socks, srv.URL("/hello.txt")}, {"http", r.http, byName}} {
		go func() {
			st, b, _, err := get(c.scheme, c.addr, c.url)
			results <- result{st, b, err}
		}()
	}
	// Let at least one reconnect attempt fail against the stopped server,
	// so the connections have waited through a real outage.
	lw.waitFor(t, "reconnect failed", 1, 10*time.Second)
	select {
	case res := <-results:
		t.Fatalf("a connection finished during the outage: %+v", res)
	default:
	}
	srv2, err := testserver.Start(testserver.Config{BigSize: 1 << 10, IKEAddr: srv.IKEAddr(), NATTAddr: srv.NATTAddr()})
	if err != nil {
		t.Fatalf("restarting the server on the same ports: %v", err)
	}
	defer srv2.Close()
	for range 2 {
		res := <-results
		if res.err != nil || res.status != 200 || res.body != srv.HelloBody() {
			t.Errorf("a connection made during the outage: %d %q %v\nlog:\n%s", res.status, res.body, res.err, lw.String())
		}
	}
	lw.waitFor(t, "tunnel reconnected", 1, 5*time.Second)
	for _, line := range strings.Split(lw.String(), "\n") {
		if strings.Contains(line, "tunnel reconnected") && (!strings.Contains(line, "cause=") || !strings.Contains(line, "outage=")) {
			t.Errorf("reconnect line without cause or duration: %s", line)
		}
	}
}

// TestConnectWaitTimesOut: with the server gone, a new connection waits
// --connect-wait and then fails with the last reconnect error.
func TestConnectWaitTimesOut(t *testing.T) {
	srv, err := testserver.Start(testserver.Config{BigSize: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 1500 * time.Millisecond
	r, lw := startServeWait(t, srv, wait)
	defer r.stop(t)
	srv.Close()
	lw.waitFor(t, "reconnect failed", 1, 10*time.Second)
	st, body, took, err := get("http", r.http, srv.URL("/hello.txt"))
	if err != nil || st != http.StatusBadGateway {
		t.Fatalf("%d %q %v, want 502 with the reason", st, body, err)
	}
	for _, want := range []string{errTunnelDown.Error(), "waited 1.5s", "last error: IKE: no reply from " + srv.IKEAddr().String()} {
		if !strings.Contains(body, want) {
			t.Errorf("body %q lacks %q", body, want)
		}
	}
	if took < wait {
		t.Errorf("failed after %v, before the connect wait of %v", took, wait)
	}
}
