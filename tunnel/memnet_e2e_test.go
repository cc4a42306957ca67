package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/memnet"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// memPeers are a test server and a client config on one in-memory network:
// no sockets, every datagram through memnet's impairments.
type memPeers struct {
	net    *memnet.Network
	srv    *testserver.Server
	client *memnet.Conn   // the client's socket
	server []*memnet.Conn // the server's sockets (IKE, NAT-T, ...)
	mu     sync.Mutex
	cfg    tunnel.Config
}

func startMemPeers(t testing.TB, seed uint64, scfg testserver.Config) *memPeers {
	t.Helper()
	p := &memPeers{net: memnet.New(seed)}
	scfg.Listen = func(a netip.AddrPort) (datapath.Conn, error) {
		c, err := p.net.Listen(a)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.server = append(p.server, c)
		p.mu.Unlock()
		return c, nil
	}
	if scfg.BigSize == 0 {
		scfg.BigSize = 1 << 20
	}
	scfg.Logger = testLogger(t).With("side", "server")
	srv, err := testserver.Start(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	p.srv = srv
	p.client, err = p.net.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.client.Close() })
	p.cfg = tunnel.Config{
		Server:         srv.IKEAddr().String(),
		NATTPort:       srv.NATTAddr().Port(),
		PSK:            []byte("testpsk"),
		User:           "vpnuser",
		Password:       []byte("vpnpass"),
		ConnectTimeout: 20 * time.Second,
		Logger:         testLogger(t).With("side", "client"),
		Conn:           p.client,
	}
	return p
}

// impairServer sets what happens to everything the server sends.
func (p *memPeers) impairServer(imp memnet.Impairment) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.server {
		c.SetImpairment(imp)
	}
}

func getThrough(ctx context.Context, c *tunnel.Client, url string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestInMemoryEndToEnd: the whole client against the test server over
// memnet, with 2 % loss, duplicates and reordering both ways and 5 ms of
// delay: it connects, resolves and downloads, and Close leaves nothing
// behind.
//
// Not in a testing/synctest bubble, although memnet runs in one
// (memnet.TestDelayAndClose): gVisor parks its TCP processor goroutines
// with its own gopark (pkg/sync.Gopark), which synctest does not count as
// durably blocked, so the bubble's fake clock never advances once a
// netstack exists (checked: Dial hangs in a bubble).
func TestInMemoryEndToEnd(t *testing.T) {
	func() {
		p := startMemPeers(t, 1, testserver.Config{})
		imp := memnet.Impairment{Loss: 0.02, Duplicate: 0.02, Reorder: 0.02, Delay: 5 * time.Millisecond}
		p.impairServer(imp)
		p.client.SetImpairment(imp)
		c, err := tunnel.Dial(context.Background(), p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if addrs, err := c.LookupHost(ctx, testserver.TargetName); err != nil || len(addrs) == 0 {
			t.Fatalf("LookupHost: %v %v", addrs, err)
		}
		body, err := getThrough(ctx, c, p.srv.URL("/hello.txt"))
		if err != nil || body != p.srv.HelloBody() {
			t.Fatalf("hello.txt = %q, %v", body, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left := tunnelGoroutines(); len(left) != 0 {
			t.Errorf("%d tunnel goroutines after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		sent, dropped := p.client.Stats()
		t.Logf("client sent %d datagrams, %d dropped", sent, dropped)
	}()
}

// TestBlackholeDeclaredDead: once the tunnel is up, everything the server
// sends vanishes (a NAT mapping gone). Dead-peer detection must declare the
// tunnel dead within three DPD intervals of the last sign of life (RFC 3706
// §5.3: R-U-THERE only after silence), with the IKE/ESP layer named, and
// the tunnel must be down (Done) soon after. Real time (see TestInMemoryEndToEnd for why not synctest), with a
// short interval.
func TestBlackholeDeclaredDead(t *testing.T) {
	func() {
		const interval = 500 * time.Millisecond
		p := startMemPeers(t, 2, testserver.Config{})
		cfg := p.cfg
		cfg.DPDInterval = interval
		c, err := tunnel.Dial(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Idle but alive for 5 intervals: DPD answered, nothing declared.
		time.Sleep(5 * interval)
		if err := c.Err(); err != nil {
			t.Fatalf("tunnel down while the server was alive: %v", err)
		}
		p.impairServer(memnet.Impairment{Blackhole: true})
		start := time.Now()
		for c.Err() == nil {
			if time.Since(start) > 20*interval {
				t.Fatal("a blackholed server was not noticed in 20 intervals")
			}
			time.Sleep(interval / 50)
		}
		took := time.Since(start)
		err = c.Err()
		if !errors.Is(err, ike.ErrPeerDead) || !errors.Is(err, tunnel.ErrServerUnreachable) || !strings.Contains(err.Error(), "IKE/ESP") {
			t.Fatalf("err = %v, want ike.ErrPeerDead, class unreachable, layer IKE/ESP", err)
		}
		// Dead three intervals after the last sign of life (one of
		// silence, two more for the R-U-THEREs), which came up to one
		// interval before the blackhole: 2-3 intervals (plus a poll step).
		if took < 9*interval/5 || took > 7*interval/2 {
			t.Errorf("declared dead after %v, want 2-3 intervals (%v-%v)", took, 2*interval, 3*interval)
		}
		// No goodbyes to a dead server: PPP and L2TP stop at once (before,
		// each waited 1 s for an acknowledgement that could not come, and
		// teardown warned that they did not stop), so the tunnel is down
		// as soon as the stack is closed.
		select {
		case <-c.Done():
		case <-time.After(2 * time.Second):
			t.Error("the tunnel was not down 2 s after the server was found dead")
		}
		down := time.Since(start) - took
		if err := c.Close(); err != nil {
			t.Errorf("Close after the server was found dead: %v, want nil (every layer stopped at once)", err)
		}
		t.Logf("blackhole noticed after %v, down %v later: %v", took, down, err)
	}()
}
