package ppp

import (
	"bytes"
	"fmt"
	"time"
)

// fsmState is the subset of the RFC 1661 §4.2 automaton states this package
// uses: both ends are administratively Open and the lower layer is Up from
// the start, so Initial/Starting/Stopped collapse into stInitial.
type fsmState uint8

const (
	stInitial fsmState = iota
	stReqSent
	stAckRcvd
	stAckSent
	stOpened
)

func (s fsmState) String() string {
	return [...]string{"Initial", "Req-Sent", "Ack-Rcvd", "Ack-Sent", "Opened"}[s]
}

// optionHandler supplies the option semantics of one control protocol
// (LCP or IPCP) for one role.
type optionHandler interface {
	// appendRequest appends the options of our next Configure-Request.
	appendRequest(b []byte) []byte
	// checkRequest classifies the peer's Configure-Request (options already
	// validated): options to Nak (with our values) go to nak, options to
	// Reject (verbatim) to rej. A non-nil error ends the session.
	checkRequest(opts []byte, nak, rej []byte) (nakOut, rejOut []byte, err error)
	// peerAcked is called when we Ack the peer's request.
	peerAcked(opts []byte)
	// gotNak and gotReject adjust our next request (RFC 1661 §5.3, §5.4).
	gotNak(opts []byte) error
	gotReject(opts []byte) error
	// up is called when the automaton reaches Opened.
	up() error
}

// fsm is the option negotiation automaton of RFC 1661 §4 for one protocol.
type fsm struct {
	l     *link
	proto uint16
	name  string
	h     optionHandler

	state    fsmState
	id       byte   // Identifier of our outstanding Configure-Request
	sentReq  []byte // its options; a Configure-Ack must echo them exactly
	retries  int    // Restart counter (RFC 1661 §4.6)
	deadline time.Time
	replies  int // Nak/Reject received since the last Ack, bounds non-convergence

	peerID  byte   // Identifier and options of the peer request we last acked,
	peerReq []byte // to re-Ack a retransmission while Opened
	// heard: something of this protocol came from the peer since open.
	heard  bool
	sentAt time.Time // when our request was last sent

	nak, rej []byte // scratch

	// renegotiate, if set, is asked when the peer sends a new
	// Configure-Request while Opened: true means This-Layer-Down was done
	// and negotiation restarts (RFC 1661 §4.3 Opened + RCR); false ends the
	// session.
	renegotiate func() bool
	// optional: the link does not depend on this protocol (IPv6CP). When
	// the peer never answers or negotiation does not converge, the
	// automaton stops instead of ending the session.
	optional bool
	// stopped: an optional protocol given up on (stop); it is not opened
	// again.
	stopped bool
	// early is the peer's Configure-Request that arrived before we opened
	// an optional protocol (the client opens IPv6CP only once IPCP is up);
	// open answers it, so the peer need not retransmit.
	early *packet
	// down, if set, is called when the automaton leaves Opened (This-Layer-Down):
	// the peer closed or rejected the protocol, or restarted its negotiation.
	down func()
}

// stop gives up on an optional protocol: no more requests or timers.
func (f *fsm) stop(why string) {
	if f.state == stInitial {
		return
	}
	wasOpen := f.state == stOpened
	f.state = stInitial
	f.stopped = true
	f.early = nil
	f.deadline = time.Time{}
	f.l.log.Info("ppp: "+f.name+" not available; continuing without it", "reason", why)
	if wasOpen && f.down != nil {
		f.down()
	}
}

func newFSM(l *link, proto uint16, name string, h optionHandler) *fsm {
	return &fsm{l: l, proto: proto, name: name, h: h}
}

// open starts negotiation: This-Layer-Started + Send-Configure-Request.
func (f *fsm) open() {
	f.state = stReqSent
	f.heard = false
	f.retries = f.l.maxConfigure
	f.id = f.l.nextID()
	f.sentReq = f.h.appendRequest(f.sentReq[:0])
	f.sendRequest()
	if e := f.early; e != nil {
		f.early = nil
		if err := f.input(*e); err != nil {
			f.l.log.Debug("ppp: the peer's early request", "proto", f.name, "err", err)
		}
	}
}

// defaultResendAfter: see rcvRequest; Config.PeerRTT may set a shorter one.
const defaultResendAfter = 250 * time.Millisecond

// minResendAfter bounds the resendAfter derived from Config.PeerRTT.
const minResendAfter = 20 * time.Millisecond

func (f *fsm) sendRequest() {
	f.retries--
	f.sentAt = f.l.clk.Now()
	f.deadline = f.sentAt.Add(f.l.restart)
	f.l.sendPacket(f.proto, codeConfReq, f.id, f.sentReq)
}

// newRequest rebuilds our request after a Nak/Reject with a fresh Identifier
// (RFC 1661 §5.1: it must change when the contents change).
func (f *fsm) newRequest() {
	f.retries = f.l.maxConfigure
	f.id = f.l.nextID()
	f.sentReq = f.h.appendRequest(f.sentReq[:0])
	f.sendRequest()
}

func (f *fsm) toOpened() error {
	f.state = stOpened
	f.deadline = time.Time{}
	f.l.log.Debug("ppp: opened", "proto", f.name)
	return f.h.up()
}

// timeout handles the Restart timer (RFC 1661 §4.6 TO+ / TO-).
func (f *fsm) timeout(now time.Time) error {
	if f.deadline.IsZero() || now.Before(f.deadline) {
		return nil
	}
	f.deadline = time.Time{}
	switch f.state {
	case stReqSent, stAckRcvd, stAckSent:
		if f.retries <= 0 {
			if f.optional {
				f.stop("no reply")
				return nil
			}
			return fmt.Errorf("%w: %s: no reply to %d Configure-Requests", ErrTimeout, f.name, f.l.maxConfigure)
		}
		if f.state == stAckRcvd {
			f.state = stReqSent
		}
		f.l.log.Debug("ppp: retransmit Configure-Request", "proto", f.name, "id", f.id)
		f.sendRequest()
	}
	return nil
}

// input handles Configure-Request/Ack/Nak/Reject of this protocol.
func (f *fsm) input(p packet) error {
	if f.state == stInitial {
		if f.optional && !f.stopped && p.code == codeConfReq {
			f.early = &packet{code: p.code, id: p.id, data: bytes.Clone(p.data)}
		}
		return nil // not started: silently discard (RFC 1661 §4.3), but keep an early request (see early)
	}
	switch p.code {
	case codeConfReq:
		return f.rcvRequest(p)
	case codeConfAck:
		f.heard = true
		if p.id != f.id || !bytes.Equal(p.data, f.sentReq) {
			f.l.log.Debug("ppp: ignoring stale or bad Configure-Ack", "proto", f.name, "id", p.id)
			return nil
		}
		f.replies = 0
		switch f.state {
		case stReqSent:
			f.state = stAckRcvd
			f.retries = f.l.maxConfigure
			f.deadline = f.l.clk.Now().Add(f.l.restart) // keep waiting for the peer's request
		case stAckSent:
			return f.toOpened()
		}
	case codeConfNak, codeConfRej:
		if p.id != f.id || f.state == stOpened {
			return nil
		}
		if err := checkOptions(p.data); err != nil {
			f.l.log.Debug("ppp: bad options in Nak/Reject", "proto", f.name, "err", err)
			return nil
		}
		f.replies++
		if f.replies > 2*f.l.maxConfigure {
			if f.optional {
				f.stop("negotiation does not converge")
				return nil
			}
			return fmt.Errorf("%w: %s negotiation does not converge", ErrTimeout, f.name)
		}
		var err error
		if p.code == codeConfNak {
			err = f.h.gotNak(p.data)
		} else {
			err = f.h.gotReject(p.data)
		}
		if err != nil {
			return err
		}
		if f.state == stAckRcvd {
			f.state = stReqSent
		}
		f.newRequest()
	}
	return nil
}

func (f *fsm) rcvRequest(p packet) error {
	if f.state == stOpened {
		if p.id == f.peerID && bytes.Equal(p.data, f.peerReq) {
			// Our Ack was lost: re-Ack without renegotiating.
			f.l.sendPacket(f.proto, codeConfAck, p.id, p.data)
			return nil
		}
		// RFC 1661 would renegotiate (and for LCP redo authentication);
		// this implementation ends the session and lets the caller
		// reconnect, unless the role allows it (client, before it is
		// authenticated).
		if f.renegotiate == nil || !f.renegotiate() {
			return fmt.Errorf("%w: peer restarted %s negotiation", ErrTerminated, f.name)
		}
		f.state = stReqSent
		if f.down != nil {
			f.down()
		}
		f.newRequest()
	}
	if err := checkOptions(p.data); err != nil {
		f.l.log.Debug("ppp: discarding malformed Configure-Request", "proto", f.name, "err", err)
		return nil
	}
	if !f.heard && f.state == stReqSent && f.l.clk.Now().Sub(f.sentAt) >= f.l.resendAfter {
		// The peer's first word, and it has not answered our request: it
		// most likely came up after we sent it (xl2tpd starts pppd only
		// once the session is up, so our first LCP request is lost), and
		// waiting out the Restart timer would cost up to 3 s. Resend it
		// now, as a retransmission (same Identifier, RFC 1661 §5.1). A
		// peer that answers within resendAfter (two round trips when
		// Config.PeerRTT is known) saw our request: its answer is on the
		// way.
		f.l.log.Debug("ppp: the peer is up and has not seen our Configure-Request; resending it", "proto", f.name, "id", f.id)
		f.sendRequest()
		f.retries++ // not a timeout: the Restart counter keeps its count
	}
	f.heard = true
	var err error
	f.nak, f.rej, err = f.h.checkRequest(p.data, f.nak[:0], f.rej[:0])
	if err != nil {
		return err
	}
	switch {
	case len(f.rej) > 0:
		f.l.sendPacket(f.proto, codeConfRej, p.id, f.rej)
	case len(f.nak) > 0:
		f.l.sendPacket(f.proto, codeConfNak, p.id, f.nak)
	default:
		f.l.sendPacket(f.proto, codeConfAck, p.id, p.data)
		f.peerID = p.id
		f.peerReq = append(f.peerReq[:0], p.data...)
		f.h.peerAcked(p.data)
		switch f.state {
		case stReqSent:
			f.state = stAckSent
		case stAckRcvd:
			return f.toOpened()
		}
		return nil
	}
	if f.state == stAckSent {
		f.state = stReqSent
	}
	return nil
}
