package tunnel_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/proxy"
	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// globalIPv6 waits until the client's stack has an address in
// testserver.Prefix6 (IPv6CP opened, the server's RA answered by SLAAC).
func globalIPv6(t *testing.T, c *tunnel.Client) netip.Addr {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, p := range c.Stack().IPv6Addrs() {
			if testserver.Prefix6.Contains(p.Addr()) {
				return p.Addr()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no global IPv6 address: %v", c.Stack().IPv6Addrs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIPv6EndToEnd: IPv6CP opens with the test server, its Router
// Advertisement gives the client a SLAAC address, AAAA records come through
// the VPN's DNS, and both proxies fetch over IPv6 by literal and by a name
// that has only an AAAA record; IPv4 keeps working beside it.
func TestIPv6EndToEnd(t *testing.T) {
	srv := startServer(t, testserver.Config{IPv6: true})
	c := dial(t, clientConfig(t, srv))
	addr := globalIPv6(t, c)
	t.Logf("SLAAC address %v", addr)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs, err := c.LookupHost(ctx, testserver.TargetName)
	if err != nil || !slices.Equal(addrs, []netip.Addr{testserver.ServerIP, testserver.ServerIP6}) {
		t.Errorf("LookupHost(%s) = %v, %v; want A then AAAA", testserver.TargetName, addrs, err)
	}
	addrs, err = c.LookupHost(ctx, testserver.Target6Name)
	if err != nil || !slices.Equal(addrs, []netip.Addr{testserver.ServerIP6}) {
		t.Errorf("LookupHost(%s) = %v, %v", testserver.Target6Name, addrs, err)
	}

	socksLn, httpLn := listen(t), listen(t)
	go proxy.NewSOCKS5(c, c, nil).Serve(ctx, socksLn)
	go proxy.NewHTTP(c, nil).Serve(ctx, httpLn)
	socksURL, _ := url.Parse("socks5h://" + socksLn.Addr().String())
	httpURL, _ := url.Parse("http://" + httpLn.Addr().String())
	for name, proxyURL := range map[string]*url.URL{"socks5": socksURL, "http": httpURL} {
		t.Run(name, func(t *testing.T) {
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			for _, u := range []string{
				"http://[" + testserver.ServerIP6.String() + "]/hello.txt", // literal
				"http://" + testserver.Target6Name + "/hello.txt",          // AAAA only
				srv.URL("/hello.txt"), // IPv4 (A first)
			} {
				if body := get(t, hc, u); string(body) != srv.HelloBody() {
					t.Errorf("%s = %q", u, body)
				}
			}
		})
	}
	// Dialling the literal reaches the server from the SLAAC address.
	conn, err := c.DialContext(ctx, "tcp", "["+testserver.ServerIP6.String()+"]:80")
	if err != nil {
		t.Fatal(err)
	}
	if la := conn.LocalAddr().String(); la[:len(addr.String())+1] != "["+addr.String() {
		t.Errorf("local address %s, want %v", la, addr)
	}
	conn.Close()
}

// TestIPv6ServerWithout: a server that Protocol-Rejects IPv6CP (most do)
// or never answers it: IPv4 works as before, the connection does not wait
// for IPv6CP (a wait would cost at least one 3 s PPP restart interval), and
// IPv6 destinations fail with a clear error.
func TestIPv6ServerWithout(t *testing.T) {
	for name, cfg := range map[string]testserver.Config{
		"protocol-reject": {},
		"no-answer":       {IPv6: true, Faults: testserver.Faults{NoIPv6CP: true}},
	} {
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, cfg)
			c := dial(t, clientConfig(t, srv))
			info := c.Info()
			if info.Times.IPCP >= 2*time.Second || info.ConnectDur >= 10*time.Second {
				t.Errorf("IPCP step %v, connect %v: waited for IPv6CP?", info.Times.IPCP, info.ConnectDur)
			}
			t.Logf("connect %v (IPCP step %v)", info.ConnectDur, info.Times.IPCP)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			if body := get(t, hc, srv.URL("/hello.txt")); string(body) != srv.HelloBody() {
				t.Errorf("IPv4 GET = %q", body)
			}
			if a := c.Stack().IPv6Addrs(); len(a) != 0 {
				t.Errorf("IPv6 addresses without IPv6CP: %v", a)
			}
			addrs, err := c.LookupHost(ctx, testserver.TargetName)
			if err != nil || !slices.Equal(addrs, []netip.Addr{testserver.ServerIP}) {
				t.Errorf("LookupHost = %v, %v; want only the A record", addrs, err)
			}
			_, err = c.DialContext(ctx, "tcp", "["+testserver.ServerIP6.String()+"]:80")
			if !errors.Is(err, netstack.ErrDial) {
				t.Errorf("IPv6 dial without IPv6: %v", err)
			}
		})
	}
}

// TestIPv6CPClosedByServer: a server that closes IPv6CP after it had opened
// it takes IPv6 away: the client drops its IPv6 addresses, dials to IPv6
// literals fail at once and names resolve to their A records only, while
// IPv4 keeps working.
func TestIPv6CPClosedByServer(t *testing.T) {
	srv := startServer(t, testserver.Config{IPv6: true})
	c := dial(t, clientConfig(t, srv))
	globalIPv6(t, c)
	if err := srv.CloseIPv6CP(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(c.Stack().IPv6Addrs()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses after IPv6CP closed: %v", c.Stack().IPv6Addrs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.DialContext(ctx, "tcp", "["+testserver.ServerIP6.String()+"]:80"); !errors.Is(err, netstack.ErrDial) || time.Since(start) > 2*time.Second {
		t.Errorf("IPv6 dial after IPv6CP closed: %v after %v, want ErrDial at once", err, time.Since(start))
	}
	addrs, err := c.LookupHost(ctx, testserver.TargetName)
	if err != nil || !slices.Equal(addrs, []netip.Addr{testserver.ServerIP}) {
		t.Errorf("LookupHost = %v, %v; want only the A record", addrs, err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	if body := get(t, hc, srv.URL("/hello.txt")); string(body) != srv.HelloBody() {
		t.Errorf("IPv4 GET = %q", body)
	}
}
