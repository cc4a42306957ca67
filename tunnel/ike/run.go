package ike

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
	"github.com/l2tpproxy/l2tpproxy/tunnel/esp"
)

const (
	inQueueLen    = 64
	eventQueueLen = 32
	maxTries      = 5 // transmissions of one request before giving up
	// mm5Tries bounds the wait for MM6. A server that answered MM2 and MM4
	// is alive; silence after MM5 means it could not decrypt or verify it,
	// almost always a wrong PSK, and the user should hear so within 10 s
	// (1 s + 2 s + 4 s), not after the full 31 s schedule.
	mm5Tries = 3
	// mm3Tries bounds the wait for MM4 in the same way: the server answered
	// MM1, so after 7 s of silence it has lost or refused the exchange, and
	// a new one (restartPhase1) is the way on, not 24 s more of MM3.
	mm3Tries = 3
	// maxP1Restarts bounds restartPhase1: three exchanges of at most 7 s
	// each fit in the default 30 s connect timeout.
	maxP1Restarts = 2
	firstRetry    = time.Second
	// renewGrace is how long the initiator waits, after the peer deleted
	// its last ESP SA, before it negotiates a new one itself. A server that
	// is stopping sends its ESP Deletes and the ISAKMP Delete in one burst
	// (RFC 2409 §5.7 lets either come first); a server that rekeys on its
	// own (SoftEther answers a Delete with a new Quick Mode) brings the new
	// SA within that time. Either way we must not start a third exchange.
	renewGrace     = 2 * time.Second
	nonceLen       = 32
	maxQMExchanges = 8
)

// NAT-T flavours agreed through vendor IDs (RFC 3947 §3.1, draft-02).
type natMode int

const (
	natNone natMode = iota
	natRFC
	natDraft
)

func (n natMode) natdType() uint8 {
	if n == natDraft {
		return PayloadNATDDraft
	}
	return PayloadNATD
}

func (n natMode) natoaType() uint8 {
	if n == natDraft {
		return PayloadNATOADraft
	}
	return PayloadNATOA
}

func (n natMode) encap() uint16 {
	if n == natDraft {
		return EncapUDPTransportDraft
	}
	return EncapUDPTransport
}

// runner is the one goroutine (Run) that owns every IKE SA of an Initiator
// or a Responder: the table of SAs, the configuration they share, the
// retransmission timer and the event channel. Received packets, commands
// (do) and timers all arrive here, so there is a single writer of IKE state.
type runner struct {
	initiator bool
	auth      Authenticator
	local     netip.AddrPort
	remote    netip.AddrPort
	l2tpPort  uint16
	p1Offer   []Phase1Transform // initiator: offered; responder: accepted
	p2Offer   []esp.Algorithm
	p1Life    time.Duration
	p2Life    time.Duration
	pfs       PFS  // initiator: the configured mode
	pfsNow    bool // initiator: our Quick Modes carry a KE (learnt across IKE SAs)
	reqPFS    bool // responder: refuse a Quick Mode without KE
	clk       clock.Clock
	log       *slog.Logger
	rand      io.Reader
	tr        Transport
	mode      Mode      // initiator: the phase-1 exchange; responder: the one it accepts
	localID   *Identity // our IDii/IDir (nil: our address)
	remoteID  *Identity // the peer's expected identity (nil: not checked)

	p2LifeKB uint64 // ESP SA lifetime in kilobytes (responder: ResponderConfig.Phase2LifeKilobytes)
	// prepareInbound is Config.PrepareInbound or ResponderConfig's (nil: none).
	prepareInbound func(esp.Keys) error

	in       chan []byte
	dropped  atomic.Uint64
	dpdAcks  atomic.Uint64 // R-U-THERE-ACKs received
	do       chan func()   // commands (and test hooks) run on the Run goroutine
	rekeyReq chan uint32   // outbound SPIs whose sequence numbers run low (RekeyChild)
	events   chan Event
	outq     []Event // events the consumer has not taken yet (Run never blocks on it)
	ctx      context.Context

	sas     saTable
	dpd     dpd
	heard   uint64    // messages received for one of our SAs (DPD activity)
	heardAt time.Time // when the last of them arrived
	timer   clock.Timer
	timerAt time.Time
	// stopped is set once we deleted the ISAKMP SAs alone: Run returns nil.
	stopped bool
	// p1Restarts counts the phase-1 exchanges restartPhase1 began again.
	p1Restarts int

	frags    reassembler // IKE fragments in (fragment.go)
	fragID   uint16      // the last fragment ID we sent
	fragSize int         // largest message sent whole (0: default)
}

func newRunner(initiator bool, auth Authenticator, local netip.AddrPort, clk clock.Clock, log *slog.Logger, rnd io.Reader, tr Transport) (*runner, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil transport", ErrConfig)
	}
	if !local.Addr().IsValid() {
		return nil, fmt.Errorf("%w: local address not set", ErrConfig)
	}
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &runner{
		initiator: initiator,
		auth:      auth,
		local:     local,
		clk:       clk,
		log:       log,
		rand:      rnd,
		tr:        tr,
		in:        make(chan []byte, inQueueLen),
		events:    make(chan Event, eventQueueLen),
		do:        make(chan func()),
		rekeyReq:  make(chan uint32, 4),
	}, nil
}

func (r *runner) handlePacket(msg []byte) {
	select {
	case r.in <- msg:
	default:
		r.dropped.Add(1)
	}
}

func (r *runner) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r.rand, b); err != nil {
		return nil, fmt.Errorf("ike: random source: %w", err)
	}
	return b, nil
}

// randomID returns a random non-zero 32-bit value >= min.
func (r *runner) randomID(min uint32) (uint32, error) {
	for i := 0; i < 64; i++ {
		b, err := r.random(4)
		if err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint32(b); v >= min && v != 0 {
			return v, nil
		}
	}
	return 0, errors.New("ike: random source returns only small values")
}

// maxQueuedEvents bounds outq against a consumer that stopped reading; a
// rekey flood would be needed to reach it.
const maxQueuedEvents = 1024

// emit queues ev for the consumer. Run hands queued events over in its
// select loop, so it never blocks on a slow consumer (a rekey while the
// client is busy setting up L2TP must not stall IKE).
func (r *runner) emit(ev Event) {
	if len(r.outq) == 0 {
		select {
		case r.events <- ev:
			return
		default:
		}
	}
	if len(r.outq) >= maxQueuedEvents {
		r.log.Warn("ike: event queue full, dropping the oldest event")
		r.outq = r.outq[1:]
	}
	r.outq = append(r.outq, ev)
}

// eventOut is the channel to hand the next queued event to (nil: none).
func (r *runner) eventOut() (chan<- Event, Event) {
	if len(r.outq) == 0 {
		return nil, nil
	}
	return r.events, r.outq[0]
}

// flushEvents moves what still fits of outq into the buffered channel when
// Run returns, so a consumer draining after Run sees the last events.
func (r *runner) flushEvents() {
	for len(r.outq) > 0 {
		select {
		case r.events <- r.outq[0]:
			r.outq = r.outq[1:]
		default:
			return
		}
	}
}

// command runs f on the Run goroutine; it waits for Run to take it, or for
// ctx to end.
func (r *runner) command(ctx context.Context, f func()) error {
	select {
	case r.do <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- timers ----

func (r *runner) armTimer() {
	next := r.dpd.nextAt
	for _, sa := range r.sas.sas {
		if at := sa.nextDeadline(); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if next.IsZero() {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.timerAt = time.Time{}
		return
	}
	if next.Equal(r.timerAt) {
		return
	}
	d := next.Sub(r.clk.Now())
	if d < 0 {
		d = 0
	}
	if r.timer == nil {
		r.timer = r.clk.NewTimer(d)
	} else {
		r.timer.Stop()
		r.timer.Reset(d)
	}
	r.timerAt = next
}

func (r *runner) timerC() <-chan time.Time {
	if r.timer == nil {
		return nil
	}
	return r.timer.C()
}

func (r *runner) onTimer() error {
	now := r.clk.Now()
	r.timerAt = time.Time{}
	for _, sa := range r.sas.all() {
		if err := r.check(sa, sa.onTimer(now)); err != nil {
			return err
		}
	}
	if err := r.dpdPoll(now); err != nil {
		return err
	}
	r.dpdArm()
	r.armTimer()
	return nil
}

// check decides what an SA's error means: the end of Run, unless the SA
// was still being negotiated while another one is up (a second Main Mode
// that failed must not take the working SA down): then only that SA goes.
func (r *runner) check(sa *ikeSA, err error) error {
	if err == nil {
		return nil
	}
	if !sa.up {
		if cur := r.sas.current(); cur != nil && cur != sa {
			r.log.Warn("ike: a second IKE SA failed; the established one carries on", "err", err)
			r.sas.remove(sa)
			r.armTimer()
			return nil
		}
	}
	var rs restartable
	if errors.As(err, &rs) {
		if sa.up || !sa.initiator || r.p1Restarts >= maxP1Restarts {
			return rs.error
		}
		return r.restartPhase1(sa, rs.error)
	}
	return err
}

// restartable marks a phase-1 failure that a new exchange (new cookies, a
// new DH key) can get past and retransmission cannot: the server answered
// our first message and then lost the exchange, saying so (INVALID-COOKIE)
// or not (no MM4).
type restartable struct{ error }

func (e restartable) Unwrap() error { return e.error }

// restartPhase1 replaces the initiator SA sa, whose phase 1 failed with
// cause, by a new exchange, as strongSwan's keyingtries do. CI saw
// SoftEther (twice, 2026-12-01) and Libreswan (once, 2026-12-03) answer
// MM1 and then never MM3; the servers' logs were gone, so the cause is
// unknown, but a server that answers MM1 is alive.
func (r *runner) restartPhase1(sa *ikeSA, cause error) error {
	r.p1Restarts++
	r.log.Warn("ike: phase 1 failed half-way; starting a new exchange", "err", cause, "attempt", r.p1Restarts+1)
	sa.pend = nil
	r.sas.remove(sa)
	_, err := r.startPhase1()
	r.armTimer()
	return err
}

// ---- receive dispatch ----

// handle processes one received message; a non-nil error ends Run.
func (r *runner) handle(raw []byte) error {
	m, err := Parse(raw)
	if err != nil {
		r.log.Debug("ike: dropping malformed message", "err", err)
		return nil
	}
	if m.NextPayload == PayloadFragment && m.Flags&FlagEncryption == 0 {
		whole, ok := r.defragment(m)
		if !ok {
			return nil
		}
		inner, err := Parse(whole)
		if err != nil || inner.ICookie != m.ICookie || inner.RCookie != m.RCookie || inner.NextPayload == PayloadFragment {
			r.log.Debug("ike: dropping a reassembled message that does not parse or match its fragments", "err", err)
			return nil
		}
		m, raw = inner, whole
	}
	sa := r.sas.lookup(m.ICookie, m.RCookie)
	if sa == nil {
		first := m.RCookie == ([8]byte{}) && m.Flags&FlagEncryption == 0
		mm1 := first && m.Exchange == ExchangeIdentityProtection
		am1 := first && m.Exchange == ExchangeAggressive
		// The client answers a Main Mode only from a server it already has
		// an IKE SA with: the server replacing it (reauthentication).
		if !(mm1 || am1) || (r.initiator && !r.sas.anyUp()) {
			r.log.Debug("ike: dropping message for no known SA", "exchange", m.Exchange)
			return nil
		}
		// A new Main Mode from the peer: a new SA in the table, in the
		// responder role. The old SA carries traffic until it is deleted.
		// The client's replies go to the server's NAT-T port, where a
		// server talking to a NATed client sends from.
		sa = &ikeSA{r: r, ckyI: m.ICookie, mm: &mainMode{}, floated: r.initiator}
		if am1 {
			sa.mm, sa.am = nil, &aggressiveMode{}
		}
		if !r.initiator && r.refuseMode(sa, m) {
			return nil
		}
		if r.initiator {
			r.log.Info("ike: the server starts a new IKE SA (Main Mode); answering it")
		}
		if !r.sas.add(sa) {
			r.log.Debug("ike: SA table full, dropping MM1")
			return nil
		}
	}
	r.heard++
	r.heardAt = r.clk.Now()
	if err := r.check(sa, sa.handle(m, raw)); err != nil {
		return err
	}
	r.dpdArm()
	return nil
}

// run is the event loop of Initiator.Run and Responder.Run.
func (r *runner) run(ctx context.Context, start func() error) error {
	r.ctx = ctx
	defer func() {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.flushEvents()
	}()
	if start != nil {
		if err := start(); err != nil {
			return err
		}
	}
	for {
		out, next := r.eventOut()
		select {
		case out <- next:
			r.outq = r.outq[1:]
		case <-ctx.Done():
			if r.sas.anyUp() {
				r.shutdown()
				return nil
			}
			return ctx.Err()
		case raw := <-r.in:
			if err := r.handle(raw); err != nil {
				return err
			}
		case f := <-r.do:
			f()
			if r.stopped {
				return nil
			}
		case spi := <-r.rekeyReq:
			if err := r.rekeyChildNow(spi); err != nil {
				return err
			}
		case <-r.timerC():
			if err := r.onTimer(); err != nil {
				return err
			}
		}
	}
}

// shutdown sends Deletes for every child SA and then the ISAKMP SA, for
// every established SA.
func (r *runner) shutdown() {
	for _, sa := range r.sas.all() {
		if !sa.up {
			continue
		}
		r.log.Debug("ike: sending Deletes", "esp_sas", len(sa.children))
		sa.deleteChildren(false)
		sa.sendDeleteISAKMP()
	}
}

func vendorNAT(ps []Payload) (natMode, bool) {
	mode := natNone
	dpd := false
	for _, p := range All(ps, PayloadVendorID) {
		switch {
		case bytes.Equal(p.Body, vidRFC3947):
			mode = natRFC
		case bytes.Equal(p.Body, vidDraft02N) || bytes.Equal(p.Body, vidDraft02) || bytes.Equal(p.Body, vidDraft03):
			if mode == natNone {
				mode = natDraft
			}
		case bytes.Equal(p.Body, vidDPD):
			dpd = true
		}
	}
	return mode, dpd
}

func idFor(ap netip.AddrPort, proto uint8, port uint16) ID {
	a := ap.Addr().Unmap()
	t := IDIPv4Addr
	if a.Is6() {
		t = IDIPv6Addr
	}
	return ID{Type: t, Protocol: proto, Port: port, Data: a.AsSlice()}
}

func natoa(ap netip.AddrPort) []byte {
	id := idFor(ap, 0, 0)
	return append([]byte{id.Type, 0, 0, 0}, id.Data...)
}
