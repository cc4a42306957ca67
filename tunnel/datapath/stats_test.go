package datapath

import (
	"bytes"
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
)

type ipCollector struct{ pkts [][]byte }

func (c *ipCollector) InjectInbound(pkt []byte) error {
	c.pkts = append(c.pkts, bytes.Clone(pkt))
	return nil
}

// TestStatsCountLayersAndDrops sends IP packets from one path to another
// over loopback and checks every layer's counters on both sides, then
// replays a datagram, corrupts one and sends one with an unknown SPI, and
// checks each lands on its own drop reason.
func TestStatsCountLayersAndDrops(t *testing.T) {
	ca, cb := loopbackPair(t)
	key := gcmKeys
	ab, ba := key(0x1111), key(0x2222)
	a := New(Config{Conn: ca, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.1"), PeerIP: netip.MustParseAddr("10.0.0.2"), LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	b := New(Config{Conn: cb, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.2"), PeerIP: netip.MustParseAddr("10.0.0.1"), LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	if err := a.InstallSA(ba, ab); err != nil {
		t.Fatal(err)
	}
	if err := b.InstallSA(ab, ba); err != nil {
		t.Fatal(err)
	}
	a.SetPeer(cb.LocalAddr().(*net.UDPAddr).AddrPort())
	a.SetSession(l2tp.Session{LocalTunnelID: 1, PeerTunnelID: 2, LocalSessionID: 3, PeerSessionID: 4})
	b.SetSession(l2tp.Session{LocalTunnelID: 2, PeerTunnelID: 1, LocalSessionID: 4, PeerSessionID: 3})
	sink := &ipCollector{}
	b.SetIP(sink)

	const n, size = 5, 100
	ip := make([]byte, size)
	ip[0] = 0x45
	for range n + 1 { // the last one is corrupted below
		buf := make([]byte, Headroom+size, Headroom+size+Tailroom)
		copy(buf[Headroom:], ip)
		if err := a.SendIP(buf, Headroom); err != nil {
			t.Fatal(err)
		}
	}
	var dgs [][]byte
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(dgs) < n+1 {
		buf := make([]byte, 2048)
		m, _, err := cb.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		dgs = append(dgs, buf[:m])
	}
	fresh := dgs[n]
	dgs = dgs[:n]
	espBytes := 0
	for _, dg := range dgs {
		espBytes += len(dg)
		b.Receive(bytes.Clone(dg))
	}
	b.Flush()
	if len(sink.pkts) != n {
		t.Fatalf("%d IP packets delivered, want %d", len(sink.pkts), n)
	}
	sa, sb := a.Stats(), b.Stats()
	want := Traffic{n + 1, uint64(espBytes + len(fresh))}
	if sa.ESPOut != want {
		t.Errorf("ESP out %+v, want %+v", sa.ESPOut, want)
	}
	if want := (Traffic{n, uint64(espBytes)}); sb.ESPIn != want {
		t.Errorf("ESP in %+v, want %+v", sb.ESPIn, want)
	}
	if w := (Traffic{n, n * size}); sa.IPOut != (Traffic{n + 1, (n + 1) * size}) || sb.IPIn != w {
		t.Errorf("IP out %+v, in %+v, want %+v", sa.IPOut, sb.IPIn, w)
	}
	if w := (Traffic{n, n * (size + 4)}); sa.PPPOut != (Traffic{n + 1, (n + 1) * (size + 4)}) || sb.PPPIn != w {
		t.Errorf("PPP out %+v, in %+v, want %+v", sa.PPPOut, sb.PPPIn, w)
	}
	if err := a.SendL2TP([]byte{0xc8, 0x02, 0, 12, 0, 2, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.L2TPControlOut != (Traffic{1, 12}) {
		t.Errorf("L2TP control out %+v", s.L2TPControlOut)
	}

	b.Receive(bytes.Clone(dgs[0])) // replayed
	bad := bytes.Clone(fresh)
	bad[len(bad)-1] ^= 1
	b.Receive(bad)
	unknown := bytes.Clone(dgs[2])
	unknown[0] ^= 0xff
	b.Receive(unknown)
	b.Flush()
	sb = b.Stats()
	for r, w := range map[DropReason]uint64{DropReplay: 1, DropUnknownSPI: 1, DropAuth: 1, DropMalformed: 0, DropNoSA: 0} {
		if sb.Drops[r] != w {
			t.Errorf("drops[%s] = %d, want %d", r, sb.Drops[r], w)
		}
	}
	if b.RxDropped.Load() != 3 || sb.ESPIn.Packets != n {
		t.Errorf("RxDropped %d, ESP in %d: dropped datagrams must not count as received", b.RxDropped.Load(), sb.ESPIn.Packets)
	}
	var sum Stats
	sum.Add(sb)
	sum.Add(sb)
	if sum.ESPIn.Bytes != 2*sb.ESPIn.Bytes || sum.Drops[DropReplay] != 2 || sum.Drops[DropAuth] != 2 {
		t.Errorf("Add: %+v", sum)
	}
}

// BenchmarkRxCounters is what the counters add to each received packet:
// the three per-layer counts of Receive, published once per burst of 16
// (recvmmsg batches are up to 64).
func BenchmarkRxCounters(b *testing.B) {
	p := new(Path)
	i := 0
	for b.Loop() {
		p.rxBurst.esp.count(1452)
		p.rxBurst.ppp.count(1404)
		p.rxBurst.ip.count(1400)
		if i++; i%16 == 0 {
			p.publishRx()
		}
	}
}

// loopbackPair is two UDP sockets on 127.0.0.1, closed when the test ends.
func loopbackPair(t *testing.T) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	var cs [2]*net.UDPConn
	for i := range cs {
		c, err := net.ListenUDP("udp4", lo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs[0], cs[1]
}

// gcmKeys is one direction's AES-GCM-128 keys under spi, freshly random.
func gcmKeys(spi uint32) esp.Keys {
	k := make([]byte, 20)
	rand.Read(k)
	return esp.Keys{SPI: spi, Alg: esp.Algorithm{Enc: esp.EncAESGCM16, EncKeyBits: 128}, EncKey: k}
}
