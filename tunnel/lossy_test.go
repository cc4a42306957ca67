package tunnel_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// relay is a UDP NAT between the client and one server port that drops
// datagrams by a deterministic rule, in both directions. The server sees the
// relay's address, as behind a real NAT.
type relay struct {
	front   *net.UDPConn // the client talks to this
	back    *net.UDPConn // this talks to the server
	server  netip.AddrPort
	client  atomic.Pointer[netip.AddrPort]
	drop    func(n uint64) bool
	n       atomic.Uint64
	dropped atomic.Uint64
	wg      sync.WaitGroup
}

func newRelay(t *testing.T, server netip.AddrPort, drop func(n uint64) bool) *relay {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	front, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp4", lo)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{front: front, back: back, server: server, drop: drop}
	r.wg.Add(2)
	go r.pump(front, true)
	go r.pump(back, false)
	t.Cleanup(func() {
		front.Close()
		back.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() netip.AddrPort { return r.front.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *relay) pump(from *net.UDPConn, toServer bool) {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, src, err := from.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if r.drop(r.n.Add(1)) {
			r.dropped.Add(1)
			continue
		}
		if toServer {
			r.client.Store(&src)
			r.back.WriteToUDPAddrPort(buf[:n], r.server)
		} else if c := r.client.Load(); c != nil {
			r.front.WriteToUDPAddrPort(buf[:n], *c)
		}
	}
}

// TestLossyLink connects through a NAT that drops datagrams: the first one
// in each direction of each port (so every layer's first setup message is
// lost once, on both ports) and then every 50th. Every layer must recover
// by retransmission and TCP must deliver the file intact.
func TestLossyLink(t *testing.T) {
	srv := startServer(t, testserver.Config{BigSize: 2 << 20})
	drop := func(n uint64) bool { return n == 1 || n%50 == 0 }
	ikeRelay := newRelay(t, srv.IKEAddr(), drop)
	nattRelay := newRelay(t, srv.NATTAddr(), drop)

	cfg := clientConfig(t, srv)
	cfg.Server = ikeRelay.addr().String()
	cfg.NATTPort = nattRelay.addr().Port()
	cfg.ConnectTimeout = 60 * time.Second
	c := dial(t, cfg)
	t.Logf("connected in %v through the lossy NAT", c.Info().ConnectDur)

	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 60 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(srv.URL("/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || hex.EncodeToString(h.Sum(nil)) != srv.BigSHA256() {
		t.Fatalf("download: %d bytes, %v, sha256 mismatch=%v", n, err, hex.EncodeToString(h.Sum(nil)) != srv.BigSHA256())
	}
	if ikeRelay.dropped.Load() == 0 || nattRelay.dropped.Load() < 10 {
		t.Errorf("the relays dropped too little to test anything: ike %d, natt %d", ikeRelay.dropped.Load(), nattRelay.dropped.Load())
	}
	t.Logf("dropped: ike %d, natt %d of %d", ikeRelay.dropped.Load(), nattRelay.dropped.Load(), nattRelay.n.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.LookupHost(ctx, testserver.TargetName); err != nil {
		t.Errorf("DNS through the lossy link: %v", err)
	}
}
