package tunnel_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ike"
	"github.com/l2tpproxy/l2tpproxy/tunnel/memnet"
	"github.com/l2tpproxy/l2tpproxy/tunnel/testserver"
)

// raceConn is the client's socket (over memnet) forcing, at each rekey,
// the order in which the server's first ESP on the new SA pair meets our
// Quick Mode, so that a rekey that races the server loses every time:
//
//   - holdQM3 (Quick Modes we start): our QM3 goes to the server, and the
//     write returns only once the client's reader has handled the server's
//     first datagram on a new SPI (the server installs the pair when QM3
//     arrives and sends on it at once, as Linux and strongSwan do).
//   - reorderQM3 (Quick Modes the server starts): the server's QM3 is
//     delivered just after its first datagram on a new SPI (it installs
//     the pair as it sends QM3; the network reorders the two).
type raceConn struct {
	*memnet.Conn
	reorder bool
	natt    uint16 // the server's NAT-T port: ESP and the Quick Modes come from it
	// active: traffic flows (echoTraffic), so the server's next datagram
	// comes within milliseconds. Before, nothing is forced: during setup
	// the server sends only what answers us, and holding back its QM3 or
	// our reader could stall L2TP.
	active atomic.Bool

	mu      sync.Mutex
	ours    map[uint32]map[string]bool // M-ID of a Quick Mode we started: our messages
	theirs  map[uint32]map[string]bool // M-ID of one the server started: its messages
	spis    map[uint32]bool            // SPIs of the server's ESP seen so far
	armed   chan struct{}              // holdQM3: our QM3 is out, waiting for the server's new SPI
	handled bool                       // holdQM3: the reader has that datagram; close armed at its next read
	backlog []raceDatagram             // reorderQM3: read, not returned yet
	races   chan struct{}              // one per race forced
	missed  int                        // rekeys with no new SPI from the server in time
}

type raceDatagram struct {
	b    []byte
	from netip.AddrPort
}

func newRaceConn(c *memnet.Conn, natt uint16, reorder bool) *raceConn {
	return &raceConn{Conn: c, reorder: reorder, natt: natt, ours: map[uint32]map[string]bool{}, theirs: map[uint32]map[string]bool{},
		spis: map[uint32]bool{}, races: make(chan struct{}, 64)}
}

// quickMode returns the M-ID of a Quick Mode message on the NAT-T port.
func (c *raceConn) quickMode(d raceDatagram) (uint32, bool) {
	dg := d.b
	if d.from.Port() != c.natt || esp.Classify(dg) != esp.KindIKE {
		return 0, false
	}
	h, err := ike.ParseHeader(dg[esp.NonESPMarkerLen:])
	if err != nil || h.Exchange != ike.ExchangeQuickMode {
		return 0, false
	}
	return h.MessageID, true
}

// note adds msg to the messages of its exchange in m and reports how many
// distinct ones there are now, 0 if msg is a retransmission.
func note(m map[uint32]map[string]bool, mid uint32, msg []byte) int {
	if m[mid] == nil {
		m[mid] = map[string]bool{}
	}
	if m[mid][string(msg)] {
		return 0
	}
	m[mid][string(msg)] = true
	return len(m[mid])
}

func (c *raceConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	var wait chan struct{}
	if mid, ok := c.quickMode(raceDatagram{b, to}); ok && !c.reorder && c.active.Load() {
		c.mu.Lock()
		if c.theirs[mid] == nil && note(c.ours, mid, b) == 2 { // our QM3
			c.armed, c.handled = make(chan struct{}), false
			wait = c.armed
		}
		c.mu.Unlock()
	}
	n, err := c.Conn.WriteToUDPAddrPort(b, to)
	if wait != nil {
		select {
		case <-wait:
			c.raced()
		case <-time.After(5 * time.Second):
			c.mu.Lock()
			c.missed++
			c.armed = nil
			c.mu.Unlock()
		}
	}
	return n, err
}

func (c *raceConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	if c.handled && c.armed != nil { // the reader is back: it has handled the datagram
		close(c.armed)
		c.armed, c.handled = nil, false
	}
	if len(c.backlog) > 0 {
		d := c.backlog[0]
		c.backlog = c.backlog[1:]
		c.mu.Unlock()
		return copy(b, d.b), d.from, nil
	}
	c.mu.Unlock()
	d, err := c.read()
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.newSPI(d) && c.armed != nil {
		c.handled = true
	}
	if mid, ok := c.quickMode(d); ok && c.reorder && c.active.Load() && c.ours[mid] == nil && note(c.theirs, mid, d.b) == 2 {
		// The server's QM3: it goes after the server's first datagram
		// on a new SPI, whatever came between stays behind it.
		var between []raceDatagram
		for len(between) < 10000 {
			c.mu.Unlock()
			next, err := c.read()
			c.mu.Lock()
			if err != nil {
				break
			}
			if c.newSPI(next) {
				c.backlog = append(append(c.backlog, d), between...)
				c.raced()
				return copy(b, next.b), next.from, nil
			}
			between = append(between, next)
		}
		c.missed++
		c.backlog = append(c.backlog, between...)
	}
	return copy(b, d.b), d.from, nil
}

func (c *raceConn) raced() {
	select {
	case c.races <- struct{}{}:
	default:
	}
}

func (c *raceConn) read() (raceDatagram, error) {
	buf := make([]byte, memnet.MaxDatagram)
	n, from, err := c.Conn.ReadFromUDPAddrPort(buf)
	return raceDatagram{b: buf[:n], from: from}, err
}

// newSPI: d is ESP on an SPI the server did not send on before. c.mu held.
func (c *raceConn) newSPI(d raceDatagram) bool {
	if d.from.Port() != c.natt || esp.Classify(d.b) != esp.KindESP {
		return false
	}
	spi, ok := esp.PeekSPI(d.b)
	if !ok || c.spis[spi] {
		return false
	}
	c.spis[spi] = true
	return len(c.spis) > 1 // the first SA is no rekey
}

// echoTraffic keeps UDP echo requests going through c (one every
// millisecond) until the returned stop is called: the server answers each,
// on its newest SA.
func echoTraffic(t *testing.T, c *tunnel.Client) (stop func()) {
	t.Helper()
	conn, err := c.DialContext(context.Background(), "udp", net.JoinHostPort(testserver.ServerIP.String(), strconv.Itoa(testserver.UDPEchoPort)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 200)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				conn.Write(payload)
			}
		}
	})
	return func() {
		close(done)
		conn.Close()
		wg.Wait()
	}
}

// waitRaces waits for n forced races (or fails after 30 s).
func waitRaces(t *testing.T, rc *raceConn, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for i := range n {
		select {
		case <-rc.races:
		case <-deadline:
			rc.mu.Lock()
			defer rc.mu.Unlock()
			t.Fatalf("%d of %d rekey races forced in 30 s (%d without a new SPI from the server)", i, n, rc.missed)
		}
	}
}

// checkNoneLost: no datagram of the server was dropped by the client for
// an unknown SPI (or otherwise), and every race was forced.
func checkNoneLost(t *testing.T, c *tunnel.Client, rc *raceConn, srv *testserver.Server) {
	t.Helper()
	s := c.Stats()
	t.Logf("server drops %v", srv.DataStats().Drops)
	rc.mu.Lock()
	missed := rc.missed
	rc.mu.Unlock()
	t.Logf("%d rekeys; ESP in %d; drops %v; %d rekeys without a new SPI from the server in time", s.ESPRekeys, s.ESPIn.Packets, s.Drops, missed)
	if d := s.Drops[datapath.DropUnknownSPI]; d != 0 {
		t.Errorf("the client dropped %d of the server's datagrams for an unknown SPI", d)
	}
	for r, d := range s.Drops {
		if d != 0 && datapath.DropReason(r) != datapath.DropUnknownSPI {
			t.Errorf("the client dropped %d datagrams (%v)", d, datapath.DropReason(r))
		}
	}
	if missed != 0 {
		t.Errorf("%d rekeys saw no datagram from the server on the new SA in time", missed)
	}
}

// TestOurRekeyServerSendsAtOnce: we rekey (the sequence-number soft limit,
// every 300 packets) and the server sends on the new pair as soon as it
// has our QM3, before our IKE goroutine goes on past sending it (raceConn
// holds it there): the client must open those datagrams. Before our
// inbound SA was ready ahead of QM3, each of these rekeys lost the
// server's first datagram on the new SA for an unknown SPI.
func TestOurRekeyServerSendsAtOnce(t *testing.T) {
	p := startMemPeers(t, 11, testserver.Config{})
	rc := newRaceConn(p.client, p.srv.NATTAddr().Port(), false)
	cfg := p.cfg
	cfg.Conn = rc
	tunnel.SetESPSeqSoftLimit(&cfg, 300)
	c := dial(t, cfg)
	stop := echoTraffic(t, c)
	rc.active.Store(true)
	waitRaces(t, rc, 3)
	stop()
	checkNoneLost(t, c, rc, p.srv)
}

// TestServerRekeyReorderedLosesNothing: the server rekeys (every 300 ms)
// and its first datagram on the new pair overtakes its QM3: the client
// must open it, although its Quick Mode is not finished. Before our
// inbound SA was ready ahead of our QM2, each such rekey lost it.
func TestServerRekeyReorderedLosesNothing(t *testing.T) {
	p := startMemPeers(t, 12, testserver.Config{Faults: testserver.Faults{RekeyEvery: 300 * time.Millisecond}})
	rc := newRaceConn(p.client, p.srv.NATTAddr().Port(), true)
	cfg := p.cfg
	cfg.Conn = rc
	c := dial(t, cfg)
	stop := echoTraffic(t, c)
	rc.active.Store(true)
	waitRaces(t, rc, 3)
	stop()
	checkNoneLost(t, c, rc, p.srv)
}
