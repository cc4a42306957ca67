package datapath

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// DropReason is why Receive dropped an ESP datagram.
type DropReason int

// Drop reasons, in the order the receive path checks them.
const (
	DropNoSA           DropReason = iota // no inbound SA installed yet
	DropUnknownSPI                       // SPI of neither the current nor the previous SA (RFC 4303 §3.4.2)
	DropMalformed                        // ESP framing or padding invalid
	DropReplay                           // sequence number replayed or left of the window (RFC 4303 §3.4.3)
	DropAuth                             // ICV did not verify (RFC 4303 §3.4.4)
	DropNotUDP                           // decrypted payload is not an inner UDP datagram (not L2TP)
	DropL2TPMalformed                    // L2TP data header invalid
	DropUnknownSession                   // L2TP session ID is not ours
	DropPPPMalformed                     // PPP frame invalid
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"no_sa", "unknown_spi", "malformed", "replay", "auth", "not_udp",
	"l2tp_malformed", "unknown_session", "ppp_malformed"}

// String is the reason's metric label.
func (r DropReason) String() string {
	if r < 0 || r >= NumDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// Traffic is a packet and byte count in one direction.
type Traffic struct{ Packets, Bytes uint64 }

// Stats is a snapshot of a path's counters. ESP counts outer datagrams (the
// UDP payload: ESP header to ICV), PPP counts the frames carried in L2TP
// data messages (control protocols and IP), IP the IPv4 packets among them,
// L2TPControl the L2TP control messages.
type Stats struct {
	ESPIn, ESPOut                 Traffic
	PPPIn, PPPOut                 Traffic
	IPIn, IPOut                   Traffic
	L2TPControlIn, L2TPControlOut Traffic
	Drops                         [NumDropReasons]uint64
	// SendFailed counts the packets a send could not seal (IP bytes, 0 if
	// unknown): for want of room, or no new SA within HoldTimeout. Holds
	// counts the times a sender was held at an exhausted outbound SA,
	// HoldTimeouts those it gave up, HoldTime the time they were held in
	// all (hold.go).
	SendFailed          Traffic
	Holds, HoldTimeouts uint64
	HoldTime            time.Duration
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	for _, p := range [][2]*Traffic{{&s.ESPIn, &o.ESPIn}, {&s.ESPOut, &o.ESPOut}, {&s.PPPIn, &o.PPPIn},
		{&s.PPPOut, &o.PPPOut}, {&s.IPIn, &o.IPIn}, {&s.IPOut, &o.IPOut},
		{&s.L2TPControlIn, &o.L2TPControlIn}, {&s.L2TPControlOut, &o.L2TPControlOut}, {&s.SendFailed, &o.SendFailed}} {
		p[0].Packets += p[1].Packets
		p[0].Bytes += p[1].Bytes
	}
	for i := range s.Drops {
		s.Drops[i] += o.Drops[i]
	}
	s.Holds += o.Holds
	s.HoldTimeouts += o.HoldTimeouts
	s.HoldTime += o.HoldTime
}

// trafficCounter is Traffic, counted with atomics.
type trafficCounter struct{ packets, bytes atomic.Uint64 }

func (t *trafficCounter) add(packets, bytes int) {
	t.packets.Add(uint64(packets))
	t.bytes.Add(uint64(bytes))
}

func (t *trafficCounter) load() Traffic { return Traffic{t.packets.Load(), t.bytes.Load()} }

// rxCounters are written by the socket's reader only; txCounters by the
// senders (under txMu). Apart, on their own cache lines, so the two sides
// do not bounce one line between the cores.
type rxCounters struct {
	_            [64]byte
	esp, ppp, ip trafficCounter
	l2tpControl  trafficCounter
	drops        [NumDropReasons]atomic.Uint64
	_            [64]byte
}

type txCounters struct {
	esp, ppp, ip trafficCounter
	l2tpControl  trafficCounter
	failed       trafficCounter
	_            [64]byte
}

// rxBurstCounts are the reader's counts of the burst in progress.
type rxBurstCounts struct{ esp, ppp, ip Traffic }

func (t *Traffic) count(bytes int) {
	t.Packets++
	t.Bytes += uint64(bytes)
}

// publishRx adds the burst's counts to the published counters. Only the
// reader calls it (Flush).
func (p *Path) publishRx() {
	b := &p.rxBurst
	for _, c := range [...]struct {
		t   *Traffic
		dst *trafficCounter
	}{{&b.esp, &p.rxc.esp}, {&b.ppp, &p.rxc.ppp}, {&b.ip, &p.rxc.ip}} {
		if c.t.Packets != 0 {
			c.dst.packets.Add(c.t.Packets)
			c.dst.bytes.Add(c.t.Bytes)
			*c.t = Traffic{}
		}
	}
}

// drop counts a dropped datagram (and the total in RxDropped).
func (p *Path) drop(r DropReason) {
	p.RxDropped.Add(1)
	p.rxc.drops[r].Add(1)
}

// openDropReason maps an error of esp.Inbound.Open to its drop reason.
func openDropReason(err error) DropReason {
	switch {
	case errors.Is(err, esp.ErrReplay):
		return DropReplay
	case errors.Is(err, esp.ErrAuth):
		return DropAuth
	}
	return DropMalformed
}

// Stats returns the path's counters. Safe to call at any time; packets
// received count from the end of their burst (Flush).
func (p *Path) Stats() Stats {
	s := Stats{
		ESPIn: p.rxc.esp.load(), ESPOut: p.txc.esp.load(),
		PPPIn: p.rxc.ppp.load(), PPPOut: p.txc.ppp.load(),
		IPIn: p.rxc.ip.load(), IPOut: p.txc.ip.load(),
		L2TPControlIn: p.rxc.l2tpControl.load(), L2TPControlOut: p.txc.l2tpControl.load(),
		SendFailed: p.txc.failed.load(), Holds: p.hold.holds.Load(), HoldTimeouts: p.hold.timeouts.Load(),
		HoldTime: time.Duration(p.hold.heldNanos.Load()),
	}
	for i := range s.Drops {
		s.Drops[i] = p.rxc.drops[i].Load()
	}
	return s
}
