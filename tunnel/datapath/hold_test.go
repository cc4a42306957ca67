package datapath

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
)

// memConn is a Conn that keeps what is written (no sockets: synctest).
type memConn struct {
	mu  sync.Mutex
	out [][]byte
}

func (c *memConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *memConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, bytes.Clone(b))
	c.mu.Unlock()
	return len(b), nil
}
func (c *memConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4500} }
func (c *memConn) Close() error        { return nil }

// take returns and forgets what was written.
func (c *memConn) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.out
	c.out = nil
	return out
}

// ipSink collects IP packets (safe for concurrent use).
type ipSink struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (s *ipSink) InjectInbound(pkt []byte) error {
	s.mu.Lock()
	s.pkts = append(s.pkts, bytes.Clone(pkt))
	s.mu.Unlock()
	return nil
}

func (s *ipSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

// holdPair is a client path a and a peer path b over memConns, with one SA
// pair installed and a recording of a's rekey requests.
type holdPair struct {
	t          *testing.T
	a, b       *Path
	ca, cb     *memConn
	got        *ipSink // what b received
	mu         sync.Mutex
	asks       []uint32 // BytesLow and SeqLow calls of a
	exhausted  []uint32
	nextSPI    uint32
	ab, ba     esp.Keys // the newest pair: a->b, b->a
	sentIP     uint32   // IP packets a sent (their number is in them)
	lastOutSPI uint32
}

func newHoldPair(t *testing.T) *holdPair {
	h := &holdPair{t: t, ca: &memConn{}, cb: &memConn{}, got: &ipSink{}, nextSPI: 0x1000}
	ask := func(spi uint32) { h.mu.Lock(); h.asks = append(h.asks, spi); h.mu.Unlock() }
	h.a = New(Config{Conn: h.ca, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.1"), PeerIP: netip.MustParseAddr("10.0.0.2"),
		LocalPort: 1701, PeerPort: 1701, NoGSO: true, BytesLow: ask, SeqLow: ask,
		Exhausted: func(spi uint32) { h.mu.Lock(); h.exhausted = append(h.exhausted, spi); h.mu.Unlock() }})
	h.b = New(Config{Conn: h.cb, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.2"), PeerIP: netip.MustParseAddr("10.0.0.1"),
		LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	h.a.SetPeer(netip.MustParseAddrPort("10.0.0.2:4500"))
	h.b.SetPeer(netip.MustParseAddrPort("10.0.0.1:4500"))
	h.a.SetSession(l2tp.Session{LocalTunnelID: 1, PeerTunnelID: 2, LocalSessionID: 3, PeerSessionID: 4})
	h.b.SetSession(l2tp.Session{LocalTunnelID: 2, PeerTunnelID: 1, LocalSessionID: 4, PeerSessionID: 3})
	h.b.SetIP(h.got)
	h.a.SetIP(&ipSink{})
	h.rekey(false, 0)
	return h
}

// rekey installs a new pair on both sides: on b at once, on a as the
// initiator (InstallSAPeerMayLag) if initiated. limit is a's byte lifetime.
func (h *holdPair) rekey(initiated bool, limit uint64) {
	h.t.Helper()
	h.ab, h.ba = gcmKeys(h.nextSPI), gcmKeys(h.nextSPI+1)
	h.nextSPI += 2
	install := h.a.InstallSA
	if initiated {
		install = h.a.InstallSAPeerMayLag
	}
	if err := h.b.InstallSA(h.ab, h.ba); err != nil {
		h.t.Fatal(err)
	}
	if err := install(h.ba, h.ab); err != nil {
		h.t.Fatal(err)
	}
	h.a.SetByteLifetime(h.ba.SPI, h.ab.SPI, limit)
}

// ipPacket is a 100-byte IPv4 packet numbered n, in a buffer with room.
func ipPacket(n uint32) []byte {
	buf := make([]byte, Headroom+100, Headroom+100+Tailroom)
	buf[Headroom] = 0x45
	binary.BigEndian.PutUint32(buf[Headroom+96:], n)
	return buf
}

// send sends the next numbered packet from a.
func (h *holdPair) send() error {
	h.sentIP++
	return h.a.SendIP(ipPacket(h.sentIP), Headroom)
}

// deliver hands what a sent to b and returns the SPIs it was sealed with.
func (h *holdPair) deliver() []uint32 {
	var spis []uint32
	for _, dg := range h.ca.take() {
		spi, _ := esp.PeekSPI(dg)
		spis = append(spis, spi)
		h.b.Receive(dg)
	}
	h.b.Flush()
	return spis
}

// checkAllArrived: b got every packet a sent, in order.
func (h *holdPair) checkAllArrived() {
	h.t.Helper()
	h.got.mu.Lock()
	defer h.got.mu.Unlock()
	if uint32(len(h.got.pkts)) != h.sentIP {
		h.t.Fatalf("b got %d IP packets, a sent %d", len(h.got.pkts), h.sentIP)
	}
	for i, p := range h.got.pkts {
		if n := binary.BigEndian.Uint32(p[96:]); n != uint32(i+1) {
			h.t.Fatalf("packet %d at position %d", n, i+1)
		}
	}
}

// dgLen is the datagram size of ipPacket with a GCM-16 SA.
const dgLen = 8 + 8 + 8 + 6 + 4 + 100 + 0 + 2 + 16 // ESP header and IV, UDP, L2TP, PPP, IP, no padding, trailer, ICV

func TestDatagramLen(t *testing.T) {
	h := newHoldPair(t)
	if err := h.send(); err != nil {
		t.Fatal(err)
	}
	if dgs := h.ca.take(); len(dgs) != 1 || len(dgs[0]) != dgLen {
		t.Fatalf("datagram of %d bytes, want %d", len(dgs[0]), dgLen)
	}
}

// TestHoldAtByteLimitUntilNewSA: an SA with a lifetime of exactly 5
// datagrams seals 5, then holds the 6th sender (nothing sent, a rekey
// asked) until a new SA is installed, which carries it: no byte over the
// limit, no packet lost.
func TestHoldAtByteLimitUntilNewSA(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, 5*dgLen)
		oldSPI := h.ab.SPI
		for range 5 {
			if err := h.send(); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- h.send() }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("6th packet past the limit: sent (%v), want held", err)
		default:
		}
		if got := h.a.out.Load().SealedBytes(); got != 5*dgLen {
			t.Fatalf("old SA sealed %d bytes, limit %d", got, 5*dgLen)
		}
		if s := h.a.Stats(); s.Holds != 1 {
			t.Fatalf("Holds %d, want 1", s.Holds)
		}
		h.mu.Lock()
		asked := len(h.asks) > 0 && h.asks[len(h.asks)-1] == oldSPI
		h.mu.Unlock()
		if !asked {
			t.Fatalf("no rekey asked for %08x when the sender was held: %x", oldSPI, h.asks)
		}
		time.Sleep(3 * time.Second) // held for a while: still nothing lost
		h.rekey(false, 5*dgLen)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		spis := h.deliver()
		if len(spis) != 6 || spis[4] != oldSPI || spis[5] != h.ab.SPI {
			t.Fatalf("datagrams on SPIs %x, want 5 on %x and the 6th on %x", spis, oldSPI, h.ab.SPI)
		}
		h.checkAllArrived()
		if s := h.a.Stats(); s.SendFailed.Packets != 0 || s.HoldTimeouts != 0 {
			t.Fatalf("SendFailed %d, HoldTimeouts %d", s.SendFailed.Packets, s.HoldTimeouts)
		}
	})
}

// TestHoldTimeout: with no new SA, a held sender gives up after exactly
// HoldTimeout with ErrSAExhausted, tells Config.Exhausted, and counts the
// packet as failed; nothing went past the limit.
func TestHoldTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, 2*dgLen)
		h.send()
		h.send()
		start := time.Now()
		err := h.send()
		if !errors.Is(err, ErrSAExhausted) {
			t.Fatalf("held sender without a new SA: %v, want ErrSAExhausted", err)
		}
		if waited := time.Since(start); waited != HoldTimeout {
			t.Fatalf("gave up after %v, want %v", waited, HoldTimeout)
		}
		h.mu.Lock()
		ex := h.exhausted
		h.mu.Unlock()
		if len(ex) != 1 || ex[0] != h.ab.SPI {
			t.Fatalf("Exhausted called with %x, want [%x]", ex, h.ab.SPI)
		}
		s := h.a.Stats()
		if s.SendFailed.Packets != 1 || s.HoldTimeouts != 1 || len(h.deliver()) != 2 {
			t.Fatalf("SendFailed %d HoldTimeouts %d", s.SendFailed.Packets, s.HoldTimeouts)
		}
	})
}

// TestHoldWaitsForPeerSwitch: our own rekey's SA (InstallSAPeerMayLag)
// does not release the held sender at once (the peer may not have its
// inbound SA yet); the peer's first packet on the new pair does.
func TestHoldWaitsForPeerSwitch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, 3*dgLen)
		for range 3 {
			h.send()
		}
		done := make(chan error, 1)
		go func() { done <- h.send() }()
		synctest.Wait()
		h.rekey(true, 0)
		time.Sleep(OutboundSwitchDelay / 2)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("released (%v) before the peer showed it has the new pair", err)
		default:
		}
		// b sends on the new pair; a opens it and switches.
		buf := ipPacket(1)
		if err := h.b.SendIP(buf, Headroom); err != nil {
			t.Fatal(err)
		}
		for _, dg := range h.cb.take() {
			h.a.Receive(dg)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if spis := h.deliver(); len(spis) != 4 || spis[3] != h.ab.SPI {
			t.Fatalf("SPIs %x, want the 4th on the new %x", spis, h.ab.SPI)
		}
		h.checkAllArrived()
	})
}

// TestHoldReleasedBySwitchDelay: without a word from the peer, the held
// sender goes on when OutboundSwitchDelay has passed since the install.
func TestHoldReleasedBySwitchDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, 1*dgLen)
		h.send()
		done := make(chan error, 1)
		go func() { done <- h.send() }()
		synctest.Wait()
		h.rekey(true, 0)
		installed := time.Now()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(installed); d != OutboundSwitchDelay {
			t.Fatalf("released %v after the install, want %v", d, OutboundSwitchDelay)
		}
		h.deliver()
		h.checkAllArrived()
	})
}

// TestHoldAtSeqExhaustion: at sequence number 2^32-1 the next sender is
// held (SeqLow asked), not failed with ErrSeqExhausted, and goes on with
// sequence number 1 of the new SA.
func TestHoldAtSeqExhaustion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.a.out.Load().SetSeqForTest(math.MaxUint32 - 1)
		oldSPI := h.ab.SPI
		if err := h.send(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- h.send() }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("send after 2^32-1: %v, want held", err)
		default:
		}
		h.mu.Lock()
		asks := h.asks
		h.mu.Unlock()
		if len(asks) == 0 || asks[len(asks)-1] != oldSPI {
			t.Fatalf("rekey asks %x, want %x", asks, oldSPI)
		}
		h.rekey(false, 0)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		dgs := h.ca.take()
		if len(dgs) != 2 || binary.BigEndian.Uint32(dgs[0][4:]) != math.MaxUint32 ||
			binary.BigEndian.Uint32(dgs[1][:]) != h.ab.SPI || binary.BigEndian.Uint32(dgs[1][4:]) != 1 {
			t.Fatalf("%d datagrams, want seq 2^32-1 on the old SA then seq 1 on the new", len(dgs))
		}
	})
}

// TestBatchHoldKeepsOrder: a batch of 10 whose SA has room for 4 sends
// those 4 before it holds, then the other 6 on the new SA, in order.
func TestBatchHoldKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, 4*dgLen)
		oldSPI := h.ab.SPI
		bufs := make([][]byte, 10)
		for i := range bufs {
			h.sentIP++
			bufs[i] = ipPacket(h.sentIP)
		}
		done := make(chan error, 1)
		go func() { done <- h.a.SendIPBatch(bufs, Headroom) }()
		synctest.Wait()
		h.ca.mu.Lock()
		n := len(h.ca.out)
		h.ca.mu.Unlock()
		if n != 4 {
			t.Fatalf("%d datagrams out before the hold, want the 4 that fit", n)
		}
		h.rekey(false, 0)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		spis := h.deliver()
		for i, spi := range spis {
			if want := map[bool]uint32{true: oldSPI, false: h.ab.SPI}[i < 4]; spi != want {
				t.Fatalf("datagram %d on %x, want %x (all: %x)", i, spi, want, spis)
			}
		}
		h.checkAllArrived()
		if s := h.a.Stats(); s.IPOut.Packets != 10 || s.SendFailed.Packets != 0 {
			t.Fatalf("IPOut %d SendFailed %d", s.IPOut.Packets, s.SendFailed.Packets)
		}
	})
}

// TestReleaseHeld: ReleaseHeld ends a hold at once with ErrHoldReleased.
func TestReleaseHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		h.rekey(false, dgLen)
		h.send()
		done := make(chan error, 1)
		go func() { done <- h.send() }()
		synctest.Wait()
		start := time.Now()
		h.a.ReleaseHeld()
		if err := <-done; !errors.Is(err, ErrHoldReleased) || time.Since(start) != 0 {
			t.Fatalf("after ReleaseHeld: %v after %v, want ErrHoldReleased at once", err, time.Since(start))
		}
	})
}

// TestHeldSwitchAfterPeerLag: once the peer has shown a rekey's pair 60 ms
// after our install, a sender held at the next exhausted SA goes on 4 x
// 60 ms after that pair's install, without waiting for the peer; a peer
// quicker than 50 ms still gets 200 ms.
func TestHeldSwitchAfterPeerLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldPair(t)
		// Our rekey; the peer's first packet on it 60 ms later.
		peerSends := func() {
			if err := h.b.SendIP(ipPacket(0), Headroom); err != nil {
				t.Fatal(err)
			}
			for _, dg := range h.cb.take() {
				h.a.Receive(dg)
			}
		}
		h.rekey(true, 2*dgLen)
		time.Sleep(60 * time.Millisecond)
		peerSends()
		if lag := time.Duration(h.a.hold.peerLag.Load()); lag != 60*time.Millisecond {
			t.Fatalf("peer lag %v, want 60ms", lag)
		}
		held := func(want time.Duration) {
			t.Helper()
			h.send()
			h.send()
			done := make(chan error, 1)
			go func() { done <- h.send() }()
			synctest.Wait()
			h.rekey(true, 2*dgLen)
			installed := time.Now()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if d := time.Since(installed); d != want {
				t.Fatalf("held sender went on %v after the install, want %v", d, want)
			}
			if spis := h.deliver(); len(spis) != 3 || spis[2] != h.ab.SPI {
				t.Fatalf("SPIs %x, want the 3rd on %x", spis, h.ab.SPI)
			}
		}
		held(240 * time.Millisecond)
		// A quick peer: the lag decays to what it measures, the floor stays.
		for range 20 {
			h.rekey(true, 2*dgLen)
			time.Sleep(time.Millisecond)
			peerSends()
		}
		held(minHeldSwitch)
		h.checkAllArrived()
	})
}
