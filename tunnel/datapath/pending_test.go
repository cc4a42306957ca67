package datapath

import (
	"crypto/rand"
	"net/netip"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
)

// peerRekeysFirst: the peer a has the new pair and sends on it before b's
// owner installs it (b's Quick Mode: a installed on QM3, whose ESP came
// before b's install). prepare says whether b prepared its inbound SA.
// It returns the pair and that first datagram.
func peerRekeysFirst(t *testing.T, prepare bool) (*holdPair, []byte) {
	h := newHoldPair(t)
	ab, ba := gcmKeys(h.nextSPI), gcmKeys(h.nextSPI+1)
	h.nextSPI += 2
	if prepare {
		if err := h.b.PrepareInbound(ab); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.a.InstallSA(ba, ab); err != nil { // a sends on the new pair at once
		t.Fatal(err)
	}
	if err := h.send(); err != nil {
		t.Fatal(err)
	}
	dgs := h.ca.take()
	if len(dgs) != 1 {
		t.Fatalf("a sent %d datagrams, want 1", len(dgs))
	}
	h.b.Receive(dgs[0])
	h.b.Flush()
	// b's owner installs the pair now (ChildSAUp), as the initiator.
	if err := h.b.InstallSAPeerMayLag(ab, ba); err != nil {
		t.Fatal(err)
	}
	h.ab, h.ba = ab, ba
	return h, dgs[0]
}

// TestPreparedInboundOpensBeforeInstall: a datagram on a prepared inbound
// SA is delivered before the pair is installed, and the install takes the
// prepared SA over with its replay window (the same datagram again is a
// replay); later datagrams on the pair arrive too.
func TestPreparedInboundOpensBeforeInstall(t *testing.T) {
	h, first := peerRekeysFirst(t, true)
	s := h.b.Stats()
	if s.Drops[DropUnknownSPI] != 0 || h.got.count() != 1 {
		t.Fatalf("first datagram on the prepared SA: %d unknown-SPI drops, %d of 1 delivered", s.Drops[DropUnknownSPI], h.got.count())
	}
	h.b.Receive(first)
	h.b.Flush()
	if d := h.b.Stats().Drops[DropReplay]; d != 1 {
		t.Errorf("the first datagram again after the install: %d replay drops, want 1 (the install must keep the prepared SA's window)", d)
	}
	for range 3 {
		if err := h.send(); err != nil {
			t.Fatal(err)
		}
	}
	h.deliver()
	h.checkAllArrived()
	if got := h.b.prepared(h.ab.SPI); got != nil {
		t.Error("the installed SA is still among the prepared ones")
	}
}

// TestUnpreparedInboundDropsBeforeInstall is the loss the preparation
// prevents: the same datagram without it is dropped for an unknown SPI.
func TestUnpreparedInboundDropsBeforeInstall(t *testing.T) {
	h, _ := peerRekeysFirst(t, false)
	if d := h.b.Stats().Drops[DropUnknownSPI]; d != 1 || h.got.count() != 0 {
		t.Fatalf("%d unknown-SPI drops, %d delivered; want 1 and 0", d, h.got.count())
	}
}

// TestPreparedInboundKeepsTwo: two prepared SAs (a Quick Mode of each
// side) are both usable; a third pushes out the oldest; an install with
// other keys under a prepared SPI does not take the prepared SA.
func TestPreparedInboundKeepsTwo(t *testing.T) {
	h := newHoldPair(t)
	k1, k2, k3 := gcmKeys(0x5001), gcmKeys(0x5002), gcmKeys(0x5003)
	if err := h.b.PrepareInbound(k1); err != nil {
		t.Fatal(err)
	}
	if err := h.b.PrepareInbound(k2); err != nil {
		t.Fatal(err)
	}
	if h.b.prepared(k1.SPI) == nil || h.b.prepared(k2.SPI) == nil {
		t.Fatal("one of two prepared SAs is not found")
	}
	if err := h.b.PrepareInbound(k3); err != nil {
		t.Fatal(err)
	}
	if h.b.prepared(k1.SPI) != nil || h.b.prepared(k2.SPI) == nil || h.b.prepared(k3.SPI) == nil {
		t.Error("a third prepared SA must push out only the oldest")
	}
	other := gcmKeys(k2.SPI) // same SPI, other keys
	if h.b.preparedFor(other) != nil {
		t.Error("an SA prepared from other keys was taken for these")
	}
	if err := h.b.InstallSA(other, gcmKeys(0x6000)); err != nil {
		t.Fatal(err)
	}
	if h.b.prepared(k2.SPI) == nil {
		t.Error("an install with other keys removed the prepared SA")
	}
}

// TestPreparedFirstInboundOpensBeforeAnyInstall: a responder's very first
// pair (no SA installed yet): the initiator's first ESP, right behind its
// QM3, is opened on the prepared SA instead of dropped for want of an SA
// (the test server's SCCRQ that used to wait 1 s for L2TP's resend).
func TestPreparedFirstInboundOpensBeforeAnyInstall(t *testing.T) {
	h := newHoldPair(t)
	ab, ba := gcmKeys(0x7001), gcmKeys(0x7002)
	c := New(Config{Conn: &memConn{}, Rand: rand.Reader, LocalIP: netip.MustParseAddr("10.0.0.2"), PeerIP: netip.MustParseAddr("10.0.0.1"),
		LocalPort: 1701, PeerPort: 1701, NoGSO: true})
	got := &ipSink{}
	c.SetSession(l2tp.Session{LocalTunnelID: 2, PeerTunnelID: 1, LocalSessionID: 4, PeerSessionID: 3})
	c.SetIP(got)
	if err := c.PrepareInbound(ab); err != nil {
		t.Fatal(err)
	}
	if err := h.a.InstallSA(ba, ab); err != nil {
		t.Fatal(err)
	}
	if err := h.send(); err != nil {
		t.Fatal(err)
	}
	for _, dg := range h.ca.take() {
		c.Receive(dg)
	}
	c.Flush()
	if d := c.Stats().Drops[DropNoSA]; d != 0 || got.count() != 1 {
		t.Fatalf("%d no-SA drops, %d of 1 delivered; the prepared first SA must open it", d, got.count())
	}
	if err := c.InstallSA(ab, ba); err != nil {
		t.Fatal(err)
	}
	if c.prepared(ab.SPI) != nil {
		t.Error("the installed SA is still among the prepared ones")
	}
}
