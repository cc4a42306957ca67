package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// downDialer fails every dial as a reconnecting tunnel does.
type downDialer struct{}

func (downDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, fmt.Errorf("%w for 3s; last error: test", ErrTunnelDown)
}

// TestStatsCount: each proxy counts its accepted and open connections and
// each kind of refusal: beyond the limit, outside the routes, tunnel down.
// (Wrong credentials and unreachable destinations are counted in
// cmd/l2tpproxy's TestAdminEndpoint.)
func TestStatsCount(t *testing.T) {
	routes, err := ParseRoutes([]string{"10.0.0.0/8"}, nil, "refuse")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewLimiter(1)
	var ss, hs Stats
	router := &Router{Routes: routes, Tunnel: downDialer{}}
	socksAddr := startServe(t, NewSOCKS5(router, nil, &Options{Limiter: lim, Stats: &ss}).Serve)
	httpAddr := startServe(t, NewHTTP(router, &Options{Limiter: lim, Stats: &hs}).Serve)

	// SOCKS5 to an address outside the routes: refused by the rule.
	c, rep := socksConnect(t, socksAddr, "127.0.0.1", 9)
	c.Close()
	if rep != 2 {
		t.Fatalf("outside the routes: reply %d, want 2", rep)
	}
	// Its limiter slot comes back when the server side closes (the limit is 1).
	waitFor(t, func() bool { return ss.Snapshot().Open == 0 })
	// HTTP to an address inside: the tunnel is down.
	hc := proxyClient(httpAddr)
	resp, err := hc.Get("http://10.1.2.3/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("tunnel down: %d, want 502", resp.StatusCode)
	}
	hc.CloseIdleConnections()
	waitFor(t, func() bool { return ss.Snapshot().Open == 0 && hs.Snapshot().Open == 0 })

	// One held connection fills the limit; the next is refused.
	held, err := net.Dial("tcp", socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ss.Snapshot().Open == 1 })
	c, err = net.Dial("tcp", socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{5, 1, 0})
	io.ReadAll(c)
	c.Close()
	held.Close()
	waitFor(t, func() bool { return ss.Snapshot().Open == 0 })

	s, h := ss.Snapshot(), hs.Snapshot()
	if s.Accepted != 2 || s.Refused[RefusedRoutes] != 1 || s.Refused[RefusedLimit] != 1 || s.Refused[RefusedTunnelDown] != 0 {
		t.Errorf("socks5: %+v; want 2 accepted, 1 refused by routes, 1 by the limit", s)
	}
	if h.Accepted < 1 || h.Refused[RefusedTunnelDown] != 1 || h.Refused[RefusedRoutes] != 0 || h.Refused[RefusedDial] != 0 {
		t.Errorf("http: %+v; want 1 refused with the tunnel down", h)
	}
	for r := range NumRefusals {
		if r.String() == "unknown" {
			t.Errorf("refusal %d has no name", r)
		}
	}
}
