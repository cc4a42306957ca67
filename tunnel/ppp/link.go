package ppp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

// Defaults (RFC 1661 §4.6).
const (
	DefaultRestart          = 3 * time.Second
	DefaultMaxConfigure     = 10
	DefaultMaxTerminate     = 2
	DefaultMaxFailure       = 5
	DefaultTerminateTimeout = 2 * time.Second
	DefaultMRU              = 1400
	defaultPeerMRU          = 1500 // RFC 1661 §6.1
	minMRU                  = 64

	inQueueLen = 128
	eventsLen  = 16
)

// phase is the link phase of RFC 1661 §3.2.
type phase uint8

const (
	phaseEstablish phase = iota
	phaseAuthenticate
	phaseNetwork
)

// role is what differs between Client and Server.
type role interface {
	// lcpUp: LCP reached Opened.
	lcpUp() error
	// authInput handles PAP/CHAP/EAP packets in the authentication phase.
	authInput(proto uint16, p packet) error
	// authTimeout handles the authentication deadline.
	authTimeout(now time.Time) error
	// closeReason is the Terminate-Request text on ctx cancellation.
	closeReason() string
}

// timing holds the RFC 1661 §4.6 counters and timers, with defaults.
type timing struct {
	restart          time.Duration
	maxConfigure     int
	maxTerminate     int
	maxFailure       int
	terminateTimeout time.Duration
	// resendAfter: see fsm.rcvRequest (default defaultResendAfter).
	resendAfter time.Duration
}

func (t *timing) setDefaults(restart time.Duration, maxConf, maxTerm, maxFail int, termTO time.Duration) {
	t.restart, t.maxConfigure, t.maxTerminate, t.maxFailure, t.terminateTimeout = restart, maxConf, maxTerm, maxFail, termTO
	t.resendAfter = defaultResendAfter
	if t.restart <= 0 {
		t.restart = DefaultRestart
	}
	if t.maxConfigure <= 0 {
		t.maxConfigure = DefaultMaxConfigure
	}
	if t.maxTerminate <= 0 {
		t.maxTerminate = DefaultMaxTerminate
	}
	if t.maxFailure <= 0 {
		t.maxFailure = DefaultMaxFailure
	}
	if t.terminateTimeout <= 0 {
		t.terminateTimeout = DefaultTerminateTimeout
	}
}

// link is the engine shared by Client and Server: frame queue, timer,
// LCP control packets, Protocol-Reject, termination.
type link struct {
	timing
	clk    clock.Clock
	log    *slog.Logger
	rnd    io.Reader
	send   func([]byte) error
	in     chan []byte
	events chan Event
	role   role

	lcp, ipcp *fsm
	ipv6cp    *fsm // nil: IPv6CP is Protocol-Rejected
	ipv6      ipv6State
	phase     phase
	id        byte // last Identifier used for our packets
	authDL    time.Time

	magic   uint32 // our Magic-Number, 0 if not negotiated
	peerMRU uint16
	out     []byte
	started atomic.Bool
}

func (l *link) init(clk clock.Clock, log *slog.Logger, rnd io.Reader, send func([]byte) error, r role) {
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l.clk, l.log, l.rnd, l.send, l.role = clk, log, rnd, send, r
	l.in = make(chan []byte, inQueueLen)
	l.events = make(chan Event, eventsLen)
	l.peerMRU = defaultPeerMRU
	l.out = make([]byte, 0, 1600)
	var b [1]byte
	if _, err := io.ReadFull(rnd, b[:]); err == nil {
		l.id = b[0]
	}
}

func (l *link) nextID() byte { l.id++; return l.id }

// newIPv6CP sets up IPv6CP (RFC 5072) with a random Interface-Identifier.
// Without randomness IPv6CP stays off (Protocol-Rejected). onUp is called
// when it opens, onDown when it leaves Opened.
func (l *link) newIPv6CP(onUp func(IPv6Up), onDown func()) {
	id, ok := randomIID(l.rnd, [IIDLen]byte{})
	if !ok {
		return
	}
	l.ipv6.iid = id
	l.ipv6cp = newFSM(l, protoIPV6CP, "IPv6CP", ipv6Handler{l: l, st: &l.ipv6, onUp: onUp})
	l.ipv6cp.optional = true
	l.ipv6cp.down = onDown
	l.ipv6cp.renegotiate = func() bool { return true }
}

// openNCPs starts IPCP and, if enabled, IPv6CP (RFC 1661 §3.5: each NCP
// on its own).
func (l *link) openNCPs() {
	l.ipcp.open()
	if l.ipv6cp != nil {
		l.ipv6cp.open()
	}
}

// handleFrame queues a frame for Run without blocking; frames are dropped
// when the queue is full (control traffic is retransmitted by the peer).
func (l *link) handleFrame(frame []byte) {
	select {
	case l.in <- frame:
	default:
	}
}

func (l *link) emit(e Event) {
	select {
	case l.events <- e:
	default:
		l.log.Warn("ppp: event dropped, nobody reads Events()")
	}
}

// sendPacket sends protocol | code | id | length | parts. Send errors are
// logged: lost control packets are retransmitted by the timers.
func (l *link) sendPacket(proto uint16, code, id byte, parts ...[]byte) {
	l.out = appendPacket(l.out[:0], proto, code, id, parts...)
	if err := l.send(l.out); err != nil {
		l.log.Debug("ppp: send failed", "proto", proto, "code", code, "err", err)
	}
}

func (l *link) sendRaw(b []byte) {
	if err := l.send(b); err != nil {
		l.log.Debug("ppp: send failed", "err", err)
	}
}

// run is the event loop shared by both roles.
func (l *link) run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("ppp: Run called twice")
	}
	defer close(l.events)
	timer := l.clk.NewTimer(time.Hour)
	defer timer.Stop()
	l.lcp.open()
	for {
		l.armTimer(timer)
		var err error
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrPeerUnreachable) {
				return nil
			}
			return l.terminate(timer, l.role.closeReason(), nil)
		case fr := <-l.in:
			err = l.input(fr)
		case <-timer.C():
			err = l.timeouts(l.clk.Now())
		}
		if err != nil {
			return err
		}
	}
}

func (l *link) armTimer(t clock.Timer) {
	var next time.Time
	v6 := time.Time{}
	if l.ipv6cp != nil {
		v6 = l.ipv6cp.deadline
	}
	for _, d := range [...]time.Time{l.lcp.deadline, l.ipcp.deadline, v6, l.authDL} {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		t.Stop()
		return
	}
	t.Reset(max(next.Sub(l.clk.Now()), 0))
}

func (l *link) timeouts(now time.Time) error {
	if err := l.lcp.timeout(now); err != nil {
		return err
	}
	if err := l.ipcp.timeout(now); err != nil {
		return err
	}
	if l.ipv6cp != nil {
		if err := l.ipv6cp.timeout(now); err != nil {
			return err
		}
	}
	if !l.authDL.IsZero() && !now.Before(l.authDL) {
		l.authDL = time.Time{}
		return l.role.authTimeout(now)
	}
	return nil
}

func (l *link) input(frame []byte) error {
	proto, info, err := DecodeFrame(frame)
	if err != nil {
		l.log.Debug("ppp: dropping frame", "err", err)
		return nil
	}
	switch proto {
	case ProtoIPv4, ProtoIPv6, protoVJComp, protoVJRaw:
		return nil // data is the caller's business; IPv6 is dropped silently
	}
	p, err := parsePacket(info)
	if err != nil {
		l.log.Debug("ppp: dropping packet", "proto", proto, "err", err)
		return nil
	}
	switch proto {
	case protoLCP:
		return l.lcpInput(p, info)
	case protoPAP, protoCHAP:
		if l.phase != phaseAuthenticate && !(l.phase == phaseNetwork && proto == protoCHAP) {
			return nil
		}
		return l.role.authInput(proto, p)
	case protoEAP:
		if l.phase == phaseAuthenticate {
			return l.role.authInput(proto, p)
		}
		if l.phase != phaseNetwork {
			return nil
		}
	case protoIPCP:
		if l.phase != phaseNetwork {
			return nil // NCP before authentication finished: discard (RFC 1661 §3.5)
		}
		return l.ncpInput(l.ipcp, p, info)
	case protoIPV6CP:
		if l.ipv6cp == nil {
			break // Protocol-Reject below
		}
		if l.phase != phaseNetwork {
			return nil
		}
		return l.ncpInput(l.ipv6cp, p, info)
	}
	// Unknown protocol (IPV6CP, CCP, EAP, ...). RFC 1661 §5.7: Protocol-Reject
	// in the Opened state. Only after authentication, because SoftEther kills
	// the session on a Protocol-Reject received before.
	if l.phase == phaseNetwork {
		l.log.Debug("ppp: Protocol-Reject", "proto", fmt.Sprintf("%#04x", proto))
		var pr [2]byte
		binary.BigEndian.PutUint16(pr[:], proto)
		l.sendPacket(protoLCP, codeProtoRej, l.nextID(), pr[:], l.trim(info, 6))
	}
	return nil
}

// trim bounds rejected/echoed data so the packet fits the peer's MRU.
func (l *link) trim(b []byte, overhead int) []byte {
	if m := int(l.peerMRU) - overhead; len(b) > m {
		return b[:max(m, 0)]
	}
	return b
}

func (l *link) lcpInput(p packet, raw []byte) error {
	switch p.code {
	case codeConfReq, codeConfAck, codeConfNak, codeConfRej:
		return l.lcp.input(p)
	case codeTermReq:
		l.sendPacket(protoLCP, codeTermAck, p.id)
		return fmt.Errorf("%w: %q", ErrTerminated, printable(p.data))
	case codeTermAck, codeEchoReply, codeDiscard, codeIdent, codeTimeRem:
		return nil
	case codeCodeRej:
		l.log.Warn("ppp: peer sent LCP Code-Reject", "len", len(p.data))
		return nil
	case codeProtoRej:
		if len(p.data) >= 2 {
			pr := binary.BigEndian.Uint16(p.data)
			l.log.Info("ppp: peer rejected protocol", "proto", fmt.Sprintf("%#04x", pr))
			if pr == protoIPCP {
				return fmt.Errorf("%w: peer rejected IPCP", ErrNoIP)
			}
			if pr == protoIPV6CP && l.ipv6cp != nil {
				l.ipv6cp.stop("the peer rejected IPv6CP") // RFC 1661 §5.7: stop sending it
			}
		}
		return nil
	case codeEchoReq:
		// Answer even before LCP is open: SoftEther sends its first
		// Echo-Request early and counts missing replies (RFC 1661 §5.8).
		if len(p.data) < 4 {
			return nil
		}
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], l.magic)
		l.sendPacket(protoLCP, codeEchoReply, p.id, m[:], l.trim(p.data[4:], 10))
		return nil
	}
	// Unknown code: Code-Reject carrying the rejected packet (RFC 1661 §5.6).
	l.sendPacket(protoLCP, codeCodeRej, l.nextID(), l.trim(raw[:4+len(p.data)], 6))
	return nil
}

// ncpInput handles an NCP control packet in the network phase.
func (l *link) ncpInput(f *fsm, p packet, raw []byte) error {
	switch p.code {
	case codeConfReq, codeConfAck, codeConfNak, codeConfRej:
		return f.input(p)
	case codeTermReq:
		l.sendPacket(f.proto, codeTermAck, p.id)
		if f.optional {
			f.stop("the peer closed it")
			return nil
		}
		if f.state == stOpened {
			return fmt.Errorf("%w: peer closed %s", ErrTerminated, f.name)
		}
		return nil
	case codeTermAck, codeCodeRej:
		return nil
	}
	l.sendPacket(f.proto, codeCodeRej, l.nextID(), l.trim(raw[:4+len(p.data)], 6))
	return nil
}

// terminate sends LCP Terminate-Request and waits (bounded by
// terminateTimeout, at most maxTerminate transmissions) for the Ack
// (RFC 1661 §3.7). It returns result.
func (l *link) terminate(timer clock.Timer, reason string, result error) error {
	if l.lcp.state == stInitial {
		return result
	}
	per := l.terminateTimeout / time.Duration(l.maxTerminate)
	id := l.nextID()
	sent := 0
	var next time.Time
	sendReq := func() {
		l.sendPacket(protoLCP, codeTermReq, id, []byte(reason))
		sent++
		next = l.clk.Now().Add(per)
		timer.Reset(per)
	}
	sendReq()
	for {
		select {
		case fr := <-l.in:
			proto, info, err := DecodeFrame(fr)
			if err != nil || proto != protoLCP {
				continue
			}
			p, err := parsePacket(info)
			if err != nil {
				continue
			}
			if p.code == codeTermAck && p.id == id {
				return result
			}
			if p.code == codeTermReq {
				l.sendPacket(protoLCP, codeTermAck, p.id)
				return result
			}
		case <-timer.C():
			if l.clk.Now().Before(next) {
				continue // stale expiry of an earlier arming
			}
			if sent >= l.maxTerminate {
				return result
			}
			sendReq()
		}
	}
}
