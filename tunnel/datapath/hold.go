package datapath

import (
	"cmp"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

// Holding senders at an exhausted outbound SA (issue 8).
//
// An outbound SA must never seal past its byte lifetime (the peer may
// expire it there: Linux's xfrm deletes an SA at its hard byte limit) nor
// wrap its sequence numbers (RFC 4303 §3.3.3). The rekey is asked for
// early (byteLife, Config.SeqSoftLimit), so normally a new SA has taken
// over before. When it has not, a sender whose packet the SA refuses
// (esp.ErrByteLimit, esp.ErrSeqExhausted) is held, with the send lock, as
// the rest of the path holds senders that outrun the socket: nothing is
// dropped. It goes on as soon as a newer outbound SA is current, sealing
// the same packet with it, and gives up after HoldTimeout with
// ErrSAExhausted (and tells Config.Exhausted, whose owner reconnects).
//
// A held sender does not take our own rekey's new SA the moment it is
// installed: before the peer has its inbound SA (a responder installs it
// when our QM3 arrives) the held packets would be the very ones lost (the
// in-process server dropped 61-1,577 of them per 8 MiB upload with a 1 MiB
// lifetime, in 7 of 8 runs, when they were switched at the install). It
// waits for the switch (the peer sent on the new pair or deleted the old
// one), but not for all of OutboundSwitchDelay: a peer that has nothing
// to send would stall us for that long (TCP's retransmission timer fires
// meanwhile). The time from an install to the peer's first packet on the
// new pair is measured at each switch (peerLag); a held sender switches
// at four times that after the install (at least minHeldSwitch, 200 ms).
// That bounds the peer's install from above: its first packet on the new
// pair left after it installed, and had the way back to travel.

// Errors of a held sender.
var (
	// ErrSAExhausted: the outbound SA reached its byte or sequence number
	// limit and no new SA took over within HoldTimeout: the tunnel must be
	// set up again.
	ErrSAExhausted = errors.New("datapath: outbound IPsec SA exhausted and not replaced in time")
	// ErrHoldReleased: ReleaseHeld was called while the sender was held.
	ErrHoldReleased = errors.New("datapath: held sender released: the tunnel is closing")
)

// HoldTimeout bounds how long a sender waits for a new outbound SA once
// the current one is exhausted.
const HoldTimeout = 10 * time.Second

// defaultRekeyTime is what a rekey is assumed to take before one was
// measured: a Quick Mode with Diffie-Hellman over a long path.
const defaultRekeyTime = time.Second

// holdState is the Path's part for held senders and rekey timing.
type holdState struct {
	// changed is closed (and replaced) whenever the outbound SA or the
	// pending one changes: held senders look again.
	changed atomic.Pointer[chan struct{}]
	stop    chan struct{}
	stopped sync.Once

	// askedAt is when a rekey of the current outbound SA was first asked
	// for (unix ns, 0: not yet); rekeyTime is how long the last rekeys
	// took from there to the switch (ns, decaying maximum, 0: none yet).
	askedAt   atomic.Int64
	rekeyTime atomic.Int64
	// peerLag is how long the peer took to show it had our last rekey's
	// pair: from InstallSAPeerMayLag to its first packet on it (ns,
	// decaying maximum, 0: not measured yet).
	peerLag atomic.Int64

	holds, timeouts, heldNanos atomic.Uint64
}

func (h *holdState) init() {
	ch := make(chan struct{})
	h.changed.Store(&ch)
	h.stop = make(chan struct{})
}

// signal wakes the held senders.
func (h *holdState) signal() {
	ch := make(chan struct{})
	close(*h.changed.Swap(&ch))
}

// ReleaseHeld releases held senders with ErrHoldReleased; later holds fail at
// once. The owner calls it when it tears the tunnel down, so that no
// sender waits out HoldTimeout. The path stays usable otherwise.
func (p *Path) ReleaseHeld() { p.hold.stopped.Do(func() { close(p.hold.stop) }) }

func (p *Path) now() time.Time { return p.cfg.Clock.Now() }

// setOut makes o the outbound SA and notes how long the rekey took.
func (p *Path) setOut(o *esp.Outbound) {
	old := p.out.Swap(o)
	if at := p.hold.askedAt.Swap(0); at != 0 && old != nil {
		d := p.now().UnixNano() - at
		p.hold.rekeyTime.Store(max(d, p.hold.rekeyTime.Load()/2))
	}
	p.hold.signal()
}

// peerSwitched is told that an authentic packet came on the newest
// inbound SA while our new outbound SA waits: the peer has the pair.
func (p *Path) peerSwitched() {
	if p.nextOut.Load() == nil {
		return
	}
	lag := p.now().UnixNano() - (p.nextOutAt.Load() - int64(OutboundSwitchDelay))
	p.SwitchOutbound()
	if lag > 0 {
		p.hold.peerLag.Store(max(lag, p.hold.peerLag.Load()/4*3))
	}
}

// heldSwitchAt is when a held sender takes the pending outbound SA without
// word from the peer (unix ns): heldLagFactor times the peer's measured
// lag after the install, at least minHeldSwitch, at most
// OutboundSwitchDelay (also before any lag was measured).
func (p *Path) heldSwitchAt() int64 {
	at := p.nextOutAt.Load()
	if lag := p.hold.peerLag.Load(); lag > 0 {
		wait := min(max(heldLagFactor*time.Duration(lag), minHeldSwitch), OutboundSwitchDelay)
		at = at - int64(OutboundSwitchDelay) + int64(wait)
	}
	return at
}

// The margin on the measured lag: it is measured from our install, which
// comes a little after our QM3 left, and the peer's install time varies.
// The floor covers a peer descheduled for longer than usual: at 20 ms, the
// in-process server (its IKE goroutine installs the SA) dropped 175 of an
// 8 MiB upload's datagrams for an unknown SPI in one run of go test ./...
// on a loaded 2-core machine. A held sender waits that long only when the
// peer has sent nothing on the new pair.
const (
	heldLagFactor = 4
	minHeldSwitch = 200 * time.Millisecond
)

// rekeyTime is what the next rekey is expected to take.
func (p *Path) rekeyTime() time.Duration {
	if d := p.hold.rekeyTime.Load(); d > 0 {
		return time.Duration(d)
	}
	return defaultRekeyTime
}

// askRekey asks the owner (ask: Config.SeqLow or BytesLow) to rekey the
// pair whose outbound SPI is spi, noting when the current SA's first ask
// was.
func (p *Path) askRekey(spi uint32, ask func(uint32)) {
	if cur := p.out.Load(); cur != nil && cur.SPI() == spi {
		p.hold.askedAt.CompareAndSwap(0, p.now().UnixNano())
	}
	if ask != nil {
		ask(spi)
	}
}

// exhausted tells whether err is an outbound SA's refusal to seal more.
func exhausted(err error) bool { return err == esp.ErrByteLimit || err == esp.ErrSeqExhausted }

// awaitOutbound holds the caller (who has txMu) until an outbound SA newer
// than old, which refused a packet with why, is current; or HoldTimeout
// passed (ErrSAExhausted), or ReleaseHeld was called (ErrHoldReleased).
func (p *Path) awaitOutbound(old *esp.Outbound, why error) (*esp.Outbound, error) {
	if o := p.outbound(); o != nil && o != old {
		return o, nil // a sender before us waited already
	}
	p.hold.holds.Add(1)
	ask := p.cfg.BytesLow
	if why == esp.ErrSeqExhausted {
		ask = p.cfg.SeqLow
	}
	p.askRekey(old.SPI(), ask)
	start := p.now()
	defer func() { p.hold.heldNanos.Add(uint64(p.now().Sub(start))) }()
	deadline := start.Add(cmp.Or(p.cfg.HoldTimeout, HoldTimeout))
	for {
		changed := *p.hold.changed.Load()
		if p.nextOut.Load() != nil && p.now().UnixNano() >= p.heldSwitchAt() {
			p.SwitchOutbound()
		}
		if o := p.outbound(); o != nil && o != old {
			return o, nil
		}
		now := p.now()
		wait := deadline.Sub(now)
		if wait <= 0 {
			p.hold.timeouts.Add(1)
			if p.cfg.Exhausted != nil {
				p.cfg.Exhausted(old.SPI())
			}
			return nil, ErrSAExhausted
		}
		if p.nextOut.Load() != nil {
			wait = max(min(wait, time.Duration(p.heldSwitchAt()-now.UnixNano())), 0)
		}
		t := p.cfg.Clock.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C():
		case <-p.hold.stop:
			t.Stop()
			return nil, ErrHoldReleased
		}
		t.Stop()
	}
}

// sealOrHold is sealOne that, when out refuses the packet as exhausted,
// holds until a newer SA is current and seals with that one. before runs
// first, once, when it holds (a batch sends what out sealed before: the
// peer gets the old SA's packets first). It returns the SA it sealed with.
func (p *Path) sealOrHold(out *esp.Outbound, buf []byte, start int, before func()) ([]byte, *esp.Outbound, error) {
	pkt, err := p.sealOne(out, buf, start)
	for exhausted(err) {
		if before != nil {
			before()
			before = nil
		}
		if out, err = p.awaitOutbound(out, err); err != nil {
			return nil, nil, err
		}
		pkt, err = p.sealOne(out, buf, start)
	}
	return pkt, out, err
}
