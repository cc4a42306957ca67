package l2tp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/l2tpproxy/l2tpproxy/tunnel/clock"
)

type role uint8

const (
	roleLAC role = iota
	roleLNS
)

func (r role) String() string {
	if r == roleLAC {
		return "LAC"
	}
	return "LNS"
}

// state is the combined control-connection and call state (RFC 2661 §7.2,
// §7.4.1, §7.4.2) for one tunnel with at most one incoming call.
type state uint8

const (
	stIdle          state = iota // LNS: waiting for SCCRQ; LAC: not started
	stWaitCtlReply               // LAC: SCCRQ sent, waiting for SCCRP
	stWaitCtlConn                // LNS: SCCRP sent, waiting for SCCCN
	stTunnelUp                   // tunnel established, no call yet (LNS: waiting for ICRQ)
	stWaitCallReply              // LAC: ICRQ sent, waiting for ICRP
	stWaitCallConn               // LNS: ICRP sent, waiting for ICCN
	stSessionUp                  // session established (LAC: ICCN sent)
	stClosing                    // CDN/StopCCN sent, waiting for acknowledgement
)

var stateNames = [...]string{"idle", "wait-ctl-reply", "wait-ctl-conn", "tunnel-up",
	"wait-call-reply", "wait-call-conn", "session-up", "closing"}

func (s state) String() string { return stateNames[s] }

func (s state) tunnelEstablished() bool { return s >= stTunnelUp && s <= stSessionUp }

// outMsg is a control message we queued: sent (awaiting ack) or waiting for
// window space. pkt is owned by the engine; Nr is re-stamped on every send.
type outMsg struct {
	ns  uint16
	mt  MessageType
	pkt []byte
}

type rxSlot struct {
	ns  uint16
	pkt []byte // nil: empty
}

// closeReq says how to tear down once Run stops: CDN (if a session exists)
// then StopCCN, and wait for their acknowledgement (RFC 2661 §5.6, §5.7).
type closeReq struct {
	cdn  *ResultCode
	stop ResultCode
}

// engine is the shared control-connection machinery of LAC and LNS: the
// reliable delivery layer (RFC 2661 §5.8) and the message handlers. All
// fields are owned by the Run goroutine except in/events (channels).
type engine struct {
	cfg    Config
	tr     Transport
	log    *slog.Logger
	clk    clock.Clock
	role   role
	in     chan []byte
	events chan Event

	st                   state
	localTID, peerTID    uint16
	localSID, peerSID    uint16
	peerHost, peerVendor string
	peerWindow           uint16
	sequenced            bool

	// Reliable delivery. out holds messages with Ns in [una, una+len(out));
	// out[:sent] are on the wire awaiting acknowledgement.
	una     uint16 // oldest unacknowledged Ns
	nextNs  uint16 // Ns of the next message queued
	nr      uint16 // next Ns expected from the peer
	out     []outMsg
	sent    int
	retries int
	// earlySCCRQ: the first SCCRQ's timer runs for FirstSCCRQTimeout;
	// when it fires, a new SCCRQ goes out without counting as a retry.
	earlySCCRQ bool
	// lastActivity is the PeerActivity count seen last.
	lastActivity uint64
	ackOwed      bool
	rx           []rxSlot // out-of-order messages within our receive window
	// anomalies counts what the reliable-delivery layer saw go wrong on
	// the path (see note).
	anomalies map[string]int
	zlb       [controlHeaderLen]byte

	rtx, hello  clock.Timer
	closing     *closeReq
	peerStopped bool
	// triedTIDs are the Assigned Tunnel IDs of the SCCRQs this LAC sent
	// before the current one (see freshSCCRQ): an SCCRP to any of them
	// is taken.
	triedTIDs []uint16
}

func newEngine(cfg Config, tr Transport, r role) *engine {
	cfg = cfg.withDefaults()
	e := &engine{
		cfg:        cfg,
		tr:         tr,
		log:        cfg.Logger.With("layer", "l2tp", "role", r.String()),
		clk:        cfg.Clock,
		role:       r,
		in:         make(chan []byte, inQueueLen),
		events:     make(chan Event, eventQueueLen),
		peerWindow: peerDefaultWindow,
		rx:         make([]rxSlot, cfg.RecvWindow),
		rtx:        cfg.Clock.NewTimer(time.Hour),
		hello:      cfg.Clock.NewTimer(time.Hour),
	}
	stopTimer(e.rtx)
	stopTimer(e.hello)
	return e
}

// handleControl queues one received control packet without blocking.
func (e *engine) handleControl(pkt []byte) {
	if !IsControl(pkt) {
		e.log.Debug("dropping non-control packet handed to HandleControl", "len", len(pkt))
		return
	}
	select {
	case e.in <- pkt:
	default:
		e.log.Warn("control queue full, dropping packet", "len", len(pkt))
	}
}

func (e *engine) run(ctx context.Context) error {
	resetTimer(e.hello, e.cfg.HelloInterval)
	defer stopTimer(e.hello)
	defer stopTimer(e.rtx)

	var err error
	if e.role == roleLAC {
		err = e.sendSCCRQ()
		if t := e.cfg.FirstSCCRQTimeout; err == nil && t > 0 && t < e.cfg.RetryInitial {
			e.earlySCCRQ = true
			resetTimer(e.rtx, t)
		}
	}
	for err == nil {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrPeerUnreachable) {
				e.log.Info("shutting down without goodbye: the peer is unreachable", "state", e.st)
				return nil
			}
			e.log.Info("shutting down", "state", e.st)
			why := "client shutting down"
			if e.role == roleLNS {
				why = "server shutting down"
			}
			e.closing = &closeReq{
				cdn:  &ResultCode{Result: CDNAdministrative, HasError: true, Message: why},
				stop: ResultCode{Result: StopCCNGeneralClear, HasError: true, Message: why},
			}
			return e.closeDown(nil)
		case pkt := <-e.in:
			err = e.receive(pkt)
		case <-e.rtx.C():
			err = e.retransmit()
		case <-e.hello.C():
			err = e.onSilence()
		}
		e.flushAck()
	}
	e.log.Info("control connection ending", "state", e.st, "err", err)
	return e.closeDown(err)
}

// fail records how to tear down and returns err.
func (e *engine) fail(err error, cdn *ResultCode, stop ResultCode) error {
	e.closing = &closeReq{cdn: cdn, stop: stop}
	return err
}

// closeDown sends CDN/StopCCN per e.closing and waits (bounded) for their
// acknowledgement, still acknowledging what the peer sends. Returns err.
func (e *engine) closeDown(err error) error {
	req := e.closing
	if req == nil || e.peerTID == 0 || e.peerStopped {
		return err
	}
	e.st = stClosing
	_ = e.drainRx() // consume buffered messages (a StopCCN behind the CDN)
	if e.peerStopped {
		e.flushAck()
		return err
	}
	if req.cdn != nil && e.peerSID != 0 && e.localSID != 0 {
		b := newMessage(MsgCDN, e.peerTID, e.peerSID).resultCode(*req.cdn).u16(AVPAssignedSessionID, true, e.localSID)
		e.queueOrLog(b, MsgCDN)
	}
	b := newMessage(MsgStopCCN, e.peerTID, 0).resultCode(req.stop).u16(AVPAssignedTunnelID, true, e.localTID)
	e.queueOrLog(b, MsgStopCCN)
	e.flushAck()
	deadline := e.clk.NewTimer(closeWait)
	defer stopTimer(deadline)
	for len(e.out) > 0 && !e.peerStopped {
		select {
		case pkt := <-e.in:
			_ = e.receive(pkt)
		case <-e.rtx.C():
			if e.retransmit() != nil {
				e.log.Info("teardown not acknowledged")
				return err
			}
		case <-deadline.C():
			e.log.Info("teardown not acknowledged in time")
			return err
		}
		e.flushAck()
	}
	return err
}

func (e *engine) queueOrLog(b *msgBuilder, mt MessageType) {
	if err := e.queue(b, mt); err != nil {
		e.log.Warn("cannot encode message", "type", mt, "err", err)
	}
}

// receive processes one control packet: header, acknowledgement (Nr),
// sequencing (Ns) and delivery in order (RFC 2661 §5.8).
func (e *engine) receive(pkt []byte) error {
	h, err := ParseHeader(pkt)
	if err != nil {
		e.log.Debug("dropping control packet", "err", err)
		return nil
	}
	if e.st == stWaitCtlReply && h.TunnelID != e.localTID && slices.Contains(e.triedTIDs, h.TunnelID) {
		e.log.Debug("answer to an earlier SCCRQ", "tunnel", h.TunnelID)
		e.localTID = h.TunnelID // each SCCRQ had Ns 0: the delivery state is the same
	}
	if h.TunnelID != e.localTID && (e.role != roleLNS || h.TunnelID != 0) {
		e.log.Debug("dropping control packet for another tunnel", "tunnel", h.TunnelID, "ours", e.localTID)
		return nil
	}
	if e.role == roleLNS || e.st == stSessionUp {
		// Silence is measured from the last packet. The LAC's setup is
		// bounded by HelloInterval from Run's start instead, so a peer that
		// acks (or sends HELLOs) but never answers cannot stall it.
		resetTimer(e.hello, e.cfg.HelloInterval)
	}
	e.ack(h.Nr)
	if h.IsZLB() {
		return nil
	}
	switch d := int16(h.Ns - e.nr); {
	case d < 0:
		// Duplicate: our acknowledgement was lost; re-ack (§5.8).
		e.note("the peer retransmitted a control message we had: our acknowledgement was lost, re-acking", "ns", h.Ns, "nr", h.Nr, "expected_ns", e.nr)
		e.ackOwed = true
		return nil
	case d > 0:
		if int(d) < len(e.rx) {
			e.rx[int(h.Ns)%len(e.rx)] = rxSlot{ns: h.Ns, pkt: pkt}
			e.note("control message out of order: an earlier one was lost, holding it", "ns", h.Ns, "nr", h.Nr, "expected_ns", e.nr)
		} else {
			e.note("control message beyond our receive window, dropped", "ns", h.Ns, "nr", h.Nr, "expected_ns", e.nr)
		}
		return nil
	}
	if err := e.deliver(pkt); err != nil {
		return err
	}
	return e.drainRx()
}

// note logs a reliable-delivery anomaly: at Info the 1st, 2nd, 4th, 8th...
// time each kind happens (a hostile or broken peer cannot flood the log),
// at Debug otherwise. They are rare on a working path, and they are what
// tells a lossy path from a silent peer when a tunnel later times out.
func (e *engine) note(what string, attrs ...any) {
	if e.anomalies == nil {
		e.anomalies = make(map[string]int)
	}
	e.anomalies[what]++
	n := e.anomalies[what]
	level := slog.LevelDebug
	if n&(n-1) == 0 {
		level = slog.LevelInfo
	}
	e.log.Log(context.Background(), level, what, append(attrs, "times", n)...)
}

// drainRx delivers buffered messages that are now in order.
func (e *engine) drainRx() error {
	for {
		slot := &e.rx[int(e.nr)%len(e.rx)]
		if slot.pkt == nil || slot.ns != e.nr {
			return nil
		}
		p := slot.pkt
		*slot = rxSlot{}
		if err := e.deliver(p); err != nil {
			return err
		}
	}
}

// deliver consumes the next in-order control message.
func (e *engine) deliver(pkt []byte) error {
	e.nr++
	e.ackOwed = true
	m, err := ParseControl(pkt)
	if e.st == stClosing {
		if err == nil && m.Type == MsgStopCCN {
			e.peerStopped = true
		}
		return nil
	}
	if err != nil {
		return e.fail(err, nil, ResultCode{Result: StopCCNGeneralError, Error: ErrCodeBadLength, HasError: true,
			Message: "malformed control message"})
	}
	e.log.Debug("received", "type", m.Type, "ns", m.Ns, "nr", m.Nr, "session", m.SessionID)
	return e.handle(m)
}

// ack processes the peer's Nr: every message with Ns < Nr is acknowledged.
func (e *engine) ack(nr uint16) {
	k := int(uint16(nr - e.una))
	if k == 0 || k > e.sent {
		return // nothing new, or acknowledges something we never sent
	}
	n := copy(e.out, e.out[k:])
	clear(e.out[n:])
	e.out = e.out[:n]
	e.sent -= k
	e.una = nr
	e.retries = 0
	e.earlySCCRQ = false
	if e.sent > 0 {
		resetTimer(e.rtx, e.cfg.RetryInitial)
	} else {
		stopTimer(e.rtx)
	}
	e.pump()
}

// queue assigns the next Ns to a message and sends it if the peer's receive
// window allows (RFC 2661 §5.8).
func (e *engine) queue(b *msgBuilder, mt MessageType) error {
	pkt, err := b.bytes()
	if err != nil {
		return err
	}
	e.out = append(e.out, outMsg{ns: e.nextNs, mt: mt, pkt: pkt})
	e.nextNs++
	e.pump()
	return nil
}

func (e *engine) pump() {
	for e.sent < len(e.out) && e.sent < int(e.peerWindow) {
		e.write(e.out[e.sent])
		e.sent++
		if e.sent == 1 {
			resetTimer(e.rtx, e.cfg.RetryInitial)
		}
	}
}

// write stamps Ns and the current Nr and hands the packet to the transport.
func (e *engine) write(m outMsg) {
	putNsNr(m.pkt, m.ns, e.nr)
	e.log.Debug("sending", "type", m.mt, "ns", m.ns, "nr", e.nr)
	if err := e.tr.WriteL2TP(m.pkt); err != nil {
		e.log.Warn("transport write failed", "type", m.mt, "err", err)
	}
	e.ackOwed = false
}

// flushAck sends a ZLB if we consumed or re-saw a message and nothing we
// sent since carried the new Nr. A ZLB does not consume an Ns: it carries
// the Ns of the next message we will put on the wire (§5.8).
func (e *engine) flushAck() {
	if !e.ackOwed || e.peerTID == 0 {
		return
	}
	z := appendZLB(e.zlb[:0], e.peerTID, 0, e.una+uint16(e.sent), e.nr)
	if err := e.tr.WriteL2TP(z); err != nil {
		e.log.Warn("transport write failed", "type", MsgZLB, "err", err)
	}
	e.ackOwed = false
	if e.sent > 0 && e.st.tunnelEstablished() {
		// The peer sent something that does not acknowledge all we sent,
		// so out[0] may be lost. xl2tpd takes Nr only from a message
		// whose Ns is the one it expects (control.c check_control): while
		// out[0] is missing there, the ZLB's Ns is ahead and the ZLB
		// acknowledges nothing, and its own message would wait for our
		// retransmission timer (up to 8 s) against its 31 s budget. out[0]
		// now, with the same Nr, is the message it expects; if it had it
		// after all, the ZLB serves and out[0] is a harmless duplicate.
		e.write(e.out[0])
	}
}

// retransmit resends every unacknowledged message with the current Nr,
// backing off exponentially (RFC 2661 §5.8).
func (e *engine) retransmit() error {
	if e.sent == 0 {
		return nil
	}
	if e.earlySCCRQ && e.role == roleLAC && e.st == stWaitCtlReply {
		// The first SCCRQ most likely met a server that had not yet
		// installed the IPsec SA (it does so on our QM3, which the SCCRQ
		// followed at once): send a new one now, then RetryInitial's
		// schedule as if this one were the first.
		e.earlySCCRQ = false
		e.log.Debug("first SCCRQ unanswered within FirstSCCRQTimeout", "timeout", e.cfg.FirstSCCRQTimeout)
		if err := e.freshSCCRQ(); err != nil {
			return err
		}
		resetTimer(e.rtx, e.cfg.RetryInitial)
		return nil
	}
	e.retries++
	if e.retries > e.cfg.MaxRetries {
		if !e.peerActive() {
			return fmt.Errorf("%w: %s (Ns %d) not acknowledged after %d retransmissions",
				ErrTimeout, e.out[0].mt, e.out[0].ns, e.cfg.MaxRetries)
		}
		// The peer's data keeps arriving: keep trying at the capped interval.
		e.retries = e.cfg.MaxRetries
		e.log.Debug("unacknowledged, but the peer's data still arrives", "type", e.out[0].mt, "ns", e.out[0].ns)
	}
	if e.role == roleLAC && e.st == stWaitCtlReply {
		if err := e.freshSCCRQ(); err != nil {
			return err
		}
		resetTimer(e.rtx, e.backoff())
		return nil
	}
	e.note("control message not acknowledged in time, retransmitting", "type", e.out[0].mt, "ns", e.out[0].ns, "count", e.sent, "retry", e.retries)
	for i := 0; i < e.sent; i++ {
		e.write(e.out[i])
	}
	resetTimer(e.rtx, e.backoff())
	return nil
}

// freshSCCRQ replaces an unanswered SCCRQ by a new one with a new Assigned
// Tunnel ID instead of retransmitting it. xl2tpd takes an SCCRQ whose
// tunnel ID it has seen from our address for a duplicate and ignores it
// ("Peer requested tunnel N twice, ignoring second one"): its SCCRP is
// only resent on its own timer. The first SCCRP is lost whenever our
// SCCRQ overtakes the server's installing of its outbound IPsec SA (we
// send it right after QM3; pluto installs that SA when QM3 is processed),
// and after a server VM was frozen and thawed that timer ran ~8 s late,
// so the tunnel came up 8 s late. A new tunnel ID is a new control
// connection to the server, answered at once; the half-open ones it leaves
// time out there. An SCCRP to any of our tunnel IDs is taken (triedTIDs).
func (e *engine) freshSCCRQ() error {
	if len(e.triedTIDs) == maxTriedTIDs {
		e.triedTIDs = e.triedTIDs[1:]
	}
	e.triedTIDs = append(e.triedTIDs, e.localTID)
	clear(e.out)
	e.out, e.sent, e.una, e.nextNs = e.out[:0], 0, 0, 0
	e.log.Debug("SCCRQ unanswered: a new one with a new tunnel ID", "retry", e.retries)
	return e.sendSCCRQ()
}

// maxTriedTIDs bounds triedTIDs (MaxRetries is 5 by default).
const maxTriedTIDs = 16

func (e *engine) backoff() time.Duration {
	limit := max(maxRetryInterval, e.cfg.RetryInitial)
	d := e.cfg.RetryInitial
	for i := 0; i < e.retries && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// peerActive reports whether the peer's data arrived since the last call.
func (e *engine) peerActive() bool {
	if e.cfg.PeerActivity == nil {
		return false
	}
	n := e.cfg.PeerActivity()
	active := n != e.lastActivity
	e.lastActivity = n
	return active
}

// onSilence runs when nothing arrived for HelloInterval (RFC 2661 §5.5):
// probe with HELLO once established. A LAC whose session is not up
// HelloInterval after Run started gives up.
func (e *engine) onSilence() error {
	resetTimer(e.hello, e.cfg.HelloInterval)
	if e.st == stSessionUp && e.peerActive() {
		return nil // data arrived meanwhile: the peer is alive
	}
	switch {
	case e.st == stSessionUp || (e.role == roleLNS && e.st.tunnelEstablished()):
		if len(e.out) == 0 {
			return e.queue(newMessage(MsgHELLO, e.peerTID, 0), MsgHELLO)
		}
		return nil // something is in flight already; retransmission probes
	case e.role == roleLNS && e.st == stIdle:
		return nil
	default:
		return fmt.Errorf("%w: no reply from peer in %v while in state %s", ErrTimeout, e.cfg.HelloInterval, e.st)
	}
}

func (e *engine) session() Session {
	return Session{
		LocalTunnelID: e.localTID, PeerTunnelID: e.peerTID,
		LocalSessionID: e.localSID, PeerSessionID: e.peerSID,
		PeerHostName: e.peerHost, PeerVendor: e.peerVendor,
		SequencedData: e.sequenced,
	}
}

func (e *engine) emit(ev Event) {
	select {
	case e.events <- ev:
	default:
		e.log.Warn("event queue full, dropping event", "event", fmt.Sprintf("%T", ev))
	}
}

// randID returns a random non-zero 16-bit ID (tunnel or session).
func (e *engine) randID() (uint16, error) {
	var b [2]byte
	for range 16 {
		if _, err := io.ReadFull(e.cfg.Rand, b[:]); err != nil {
			return 0, fmt.Errorf("l2tp: random ID: %w", err)
		}
		if v := binary.BigEndian.Uint16(b[:]); v != 0 {
			return v, nil
		}
	}
	return 1, nil
}

func stopTimer(t clock.Timer) {
	if !t.Stop() {
		select {
		case <-t.C():
		default:
		}
	}
}

func resetTimer(t clock.Timer, d time.Duration) {
	stopTimer(t)
	t.Reset(d)
}
