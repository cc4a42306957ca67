package datapath

import (
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
)

// TestByteLifetimeAsksForRekey: a pair limited to 10,000 bytes per SA asks
// for a rekey (BytesLow with its outbound SPI) once 90 % went out, then
// every 2 % more, and the same for what comes in; a newly installed pair
// without a limit asks nothing, and packets sealed with another SA do not
// count.
func TestByteLifetimeAsksForRekey(t *testing.T) {
	ca, cb := loopbackPair(t)
	key := gcmKeys
	var asked []uint32 // BytesLow calls of a (all from this goroutine)
	ab, ba := key(0x1111), key(0x2222)
	a := New(Config{Conn: ca, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.1"), PeerIP: netip.MustParseAddr("10.0.0.2"),
		LocalPort: 1701, PeerPort: 1701, NoGSO: true, BytesLow: func(spi uint32) { asked = append(asked, spi) }})
	b := New(Config{Conn: cb, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.2"), PeerIP: netip.MustParseAddr("10.0.0.1"),
		LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	if err := a.InstallSA(ba, ab); err != nil {
		t.Fatal(err)
	}
	if err := b.InstallSA(ab, ba); err != nil {
		t.Fatal(err)
	}
	const limit = 10_000
	a.SetByteLifetime(ba.SPI, ab.SPI, limit)
	a.SetPeer(cb.LocalAddr().(*net.UDPAddr).AddrPort())
	b.SetPeer(ca.LocalAddr().(*net.UDPAddr).AddrPort())
	a.SetSession(l2tp.Session{LocalTunnelID: 1, PeerTunnelID: 2, LocalSessionID: 3, PeerSessionID: 4})
	b.SetSession(l2tp.Session{LocalTunnelID: 2, PeerTunnelID: 1, LocalSessionID: 4, PeerSessionID: 3})
	a.SetIP(&ipCollector{})

	send := func(p *Path, conn *net.UDPConn) []byte { // one 100-byte IP packet; the datagram
		buf := make([]byte, Headroom+100, Headroom+100+Tailroom)
		buf[Headroom] = 0x45
		if err := p.SendIP(buf, Headroom); err != nil {
			t.Fatal(err)
		}
		dg := make([]byte, 2048)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := conn.ReadFromUDPAddrPort(dg)
		if err != nil {
			t.Fatal(err)
		}
		return dg[:n]
	}
	var asks []int // the byte counts at which a asked
	total := 0
	for total < limit {
		total += len(send(a, cb))
		if len(asked) > len(asks) {
			asks = append(asks, total)
		}
	}
	if len(asks) == 0 || asks[0] < limit*9/10 || asks[0] > limit*9/10+200 {
		t.Fatalf("asked at %v bytes out (limit %d), want first at ~90 %%", asks, limit)
	}
	// 90 % to 100 % in 2 % steps: 5 or 6 asks.
	if len(asks) < 4 || len(asks) > 6 {
		t.Errorf("asked %d times between 90 %% and 100 %% of the limit (%v), want every 2 %%", len(asks), asks)
	}
	for _, spi := range asked {
		if spi != ab.SPI {
			t.Errorf("BytesLow(%08x), want the outbound SPI %08x", spi, ab.SPI)
		}
	}

	// Inbound counts alone: a fresh limit, traffic from b only.
	a.SetByteLifetime(ba.SPI, ab.SPI, limit)
	asked = nil
	in := 0
	for in < limit {
		dg := send(b, ca)
		in += len(dg)
		a.Receive(dg)
	}
	a.Flush()
	if len(asked) == 0 {
		t.Fatal("no rekey asked after the inbound SA carried its byte lifetime")
	}
	asked = nil

	// A new pair without a limit: nothing asked however much flows.
	cd, dc := key(0x3333), key(0x4444)
	if err := a.InstallSA(dc, cd); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		send(a, cb)
	}
	if len(asked) != 0 {
		t.Errorf("asked %d times for a pair without a byte lifetime", len(asked))
	}
}
