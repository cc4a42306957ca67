package l2tp

import (
	"fmt"
	"slices"
)

// Firmware Revision we advertise (M=0, like xl2tpd).
const firmwareRevision = 0x0100

// Connect speed we report in ICCN (bits/s); there is no physical line.
const connectSpeed = 100_000_000

// handle dispatches one in-order, structurally valid control message.
func (e *engine) handle(m *ControlMessage) error {
	if m.Type == MsgStopCCN {
		return e.onStopCCN(m)
	}
	if m.UsesTunnelAuth() {
		err := fmt.Errorf("%w: %w: %s carries a hidden or Challenge AVP (RFC 2661 §4.3, §5.1.1)",
			ErrProtocol, ErrTunnelAuthUnsupported, m.Type)
		if e.peerTID == 0 && m.Type == MsgSCCRP {
			e.peerTID, _ = m.Uint16(AVPAssignedTunnelID)
		}
		return e.fail(err, nil, ResultCode{Result: StopCCNGeneralError, Error: ErrCodeVendorSpecific,
			HasError: true, Message: "tunnel authentication is not supported"})
	}
	r, known := m.Type.rule()
	if !known {
		if !m.TypeMandatory {
			e.log.Info("ignoring unknown message type without M bit", "type", uint16(m.Type))
			return nil
		}
		err := fmt.Errorf("%w: unknown mandatory %s (RFC 2661 §3.2)", ErrProtocol, m.Type)
		return e.fail(err, nil, ResultCode{Result: StopCCNGeneralError, Error: ErrCodeBadValue, HasError: true,
			Message: "unknown message type"})
	}
	if a, ok := m.UnknownMandatory(); ok {
		// RFC 2661 §4.1: clear the session for a session message, the
		// tunnel for a tunnel message. With one session per tunnel and Run
		// returning, both end with StopCCN; a session message gets CDN first.
		err := fmt.Errorf("%w: unknown mandatory %s in %s (RFC 2661 §4.1)", ErrProtocol, a, m.Type)
		rc := ResultCode{Result: StopCCNGeneralError, Error: ErrCodeUnknownMandAVP, HasError: true,
			Message: "unknown mandatory AVP"}
		var cdn *ResultCode
		if r.scope == scopeSession {
			if e.peerSID == 0 && e.role == roleLAC && m.Type == MsgICRP {
				e.peerSID, _ = m.Uint16(AVPAssignedSessionID) // so that CDN can reach it
			}
			cdn = &ResultCode{Result: CDNGeneralError, Error: ErrCodeUnknownMandAVP, HasError: true,
				Message: "unknown mandatory AVP"}
		}
		return e.fail(err, cdn, rc)
	}
	if m.Type == MsgCDN {
		return e.onCDN(m) // lenient: a CDN clears the session even if incomplete
	}
	if err := m.Validate(); err != nil {
		return e.fail(err, nil, ResultCode{Result: StopCCNGeneralError, Error: ErrCodeBadValue, HasError: true,
			Message: "missing required AVP"})
	}
	switch {
	case m.Type == MsgHELLO:
		return nil // acknowledged by the ZLB flushAck sends
	case m.Type == MsgSCCRP && e.role == roleLAC && e.st == stWaitCtlReply:
		return e.onSCCRP(m)
	case m.Type == MsgICRP && e.role == roleLAC && e.st == stWaitCallReply:
		return e.onICRP(m)
	case m.Type == MsgSCCRQ && e.role == roleLNS && e.st == stIdle:
		return e.onSCCRQ(m)
	case m.Type == MsgSCCCN && e.role == roleLNS && e.st == stWaitCtlConn:
		return e.onSCCCN()
	case m.Type == MsgICRQ && e.role == roleLNS && e.st == stTunnelUp:
		return e.onICRQ(m)
	case m.Type == MsgICCN && e.role == roleLNS && e.st == stWaitCallConn:
		return e.onICCN(m)
	}
	e.log.Info("ignoring unexpected control message", "type", m.Type, "state", e.st)
	return nil
}

// onStopCCN: the peer cleared the control connection (RFC 2661 §5.7). We
// acknowledge at once and stop.
func (e *engine) onStopCCN(m *ControlMessage) error {
	e.peerStopped = true
	if e.peerTID == 0 { // StopCCN in answer to our SCCRQ: ack it all the same
		e.peerTID, _ = m.Uint16(AVPAssignedTunnelID)
	}
	e.flushAck()
	text := "no Result Code"
	if rc, ok := m.ResultCode(); ok {
		text = rc.describe(MsgStopCCN)
	}
	e.log.Info("peer sent StopCCN", "result", text)
	return fmt.Errorf("%w: %s", ErrTunnelClosed, text)
}

// onCDN: the peer cleared our session (RFC 2661 §5.6). The tunnel has no
// other use, so we clear it too.
func (e *engine) onCDN(m *ControlMessage) error {
	text := "no Result Code"
	if rc, ok := m.ResultCode(); ok {
		text = rc.describe(MsgCDN)
	}
	if sid, ok := m.Uint16(AVPAssignedSessionID); ok && e.peerSID != 0 && sid != e.peerSID {
		e.log.Warn("CDN for unexpected session", "assigned_session", sid, "peer_session", e.peerSID)
	}
	e.log.Info("peer sent CDN", "result", text)
	e.peerSID = 0
	return e.fail(fmt.Errorf("%w: %s", ErrSessionClosed, text), nil,
		ResultCode{Result: StopCCNGeneralClear, HasError: true, Message: "session closed by peer"})
}

func (e *engine) checkVersion(m *ControlMessage) error {
	if v, _ := m.Uint16(AVPProtocolVersion); v != ProtocolVersion {
		return e.fail(fmt.Errorf("%w: %s with Protocol Version %#04x, want 0x0100 (RFC 2661 §4.4.3)", ErrProtocol, m.Type, v),
			nil, ResultCode{Result: StopCCNBadVersion, HasError: true, Message: "unsupported protocol version"})
	}
	return nil
}

// learnPeer records the tunnel parameters of an SCCRQ or SCCRP (§6.1, §6.2).
func (e *engine) learnPeer(m *ControlMessage) error {
	tid, _ := m.Uint16(AVPAssignedTunnelID)
	if tid == 0 {
		return fmt.Errorf("%w: %s with Assigned Tunnel ID 0", ErrProtocol, m.Type)
	}
	e.peerTID = tid
	e.peerHost = m.Text(AVPHostName)
	e.peerVendor = m.Text(AVPVendorName)
	if w, ok := m.Uint16(AVPReceiveWindowSize); ok && w > 0 {
		e.peerWindow = w
	}
	return e.checkVersion(m)
}

func (e *engine) tunnelUp() {
	e.st = stTunnelUp
	e.log.Debug("tunnel up", "local_tunnel", e.localTID, "peer_tunnel", e.peerTID,
		"peer_host", e.peerHost, "peer_vendor", e.peerVendor, "peer_window", e.peerWindow)
	e.emit(TunnelUp{PeerTunnelID: e.peerTID, PeerHostName: e.peerHost, PeerVendor: e.peerVendor})
}

// --- LAC (RFC 2661 §7.2 originator, §7.4.1 LAC incoming call) ---

// sendSCCRQ starts the control connection (§6.1). AVP set and M bits as
// xl2tpd sends them (Firmware Revision and Vendor Name with M=0).
func (e *engine) sendSCCRQ() error {
	tid, err := e.randID()
	for err == nil && slices.Contains(e.triedTIDs, tid) {
		tid, err = e.randID()
	}
	if err != nil {
		return err
	}
	e.localTID = tid
	b := newMessage(MsgSCCRQ, 0, 0).
		u16(AVPProtocolVersion, true, ProtocolVersion).
		u32(AVPFramingCapabilities, true, FramingSync|FramingAsync).
		u32(AVPBearerCapabilities, true, 0).
		u16(AVPFirmwareRevision, false, firmwareRevision).
		str(AVPHostName, true, e.cfg.HostName).
		str(AVPVendorName, false, e.cfg.VendorName).
		u16(AVPAssignedTunnelID, true, e.localTID).
		u16(AVPReceiveWindowSize, true, e.cfg.RecvWindow)
	e.st = stWaitCtlReply
	e.log.Debug("sending SCCRQ", "local_tunnel", e.localTID)
	return e.queue(b, MsgSCCRQ)
}

func (e *engine) onSCCRP(m *ControlMessage) error {
	if err := e.learnPeer(m); err != nil {
		return err
	}
	if err := e.queue(newMessage(MsgSCCCN, e.peerTID, 0), MsgSCCCN); err != nil {
		return err
	}
	e.tunnelUp()
	return e.sendICRQ()
}

// sendICRQ follows SCCCN at once, without waiting for its acknowledgement
// (§6.6, §5.8: reliable delivery orders them at the peer; xl2tpd as a LAC
// does the same, control.c: magic_lac_dial right after sending SCCCN). If
// the peer's receive window is 1, the ICRQ waits in the queue for the
// SCCCN's acknowledgement. Bearer Type 0 as xl2tpd sends it.
func (e *engine) sendICRQ() error {
	sid, err := e.randID()
	if err != nil {
		return err
	}
	serial, err := e.randID()
	if err != nil {
		return err
	}
	e.localSID = sid
	b := newMessage(MsgICRQ, e.peerTID, 0).
		u16(AVPAssignedSessionID, true, e.localSID).
		u32(AVPCallSerialNumber, true, uint32(serial)).
		u32(AVPBearerType, true, 0)
	e.st = stWaitCallReply
	return e.queue(b, MsgICRQ)
}

func (e *engine) onICRP(m *ControlMessage) error {
	sid, _ := m.Uint16(AVPAssignedSessionID)
	if sid == 0 {
		return e.fail(fmt.Errorf("%w: ICRP with Assigned Session ID 0", ErrProtocol), nil,
			ResultCode{Result: StopCCNGeneralError, Error: ErrCodeBadValue, HasError: true, Message: "Assigned Session ID 0"})
	}
	if m.SessionID != e.localSID {
		e.log.Warn("ICRP header carries another session ID", "session", m.SessionID, "ours", e.localSID)
	}
	e.peerSID = sid
	b := newMessage(MsgICCN, e.peerTID, e.peerSID).
		u32(AVPTxConnectSpeed, true, connectSpeed).
		u32(AVPFramingType, true, FramingSync).
		u32(AVPRxConnectSpeed, false, connectSpeed)
	if err := e.queue(b, MsgICCN); err != nil {
		return err
	}
	// The session is up once ICCN is sent (xl2tpd as a LAC starts pppd
	// right after sending it, control.c ICRP): PPP need not wait a round
	// trip for the acknowledgement. Reliable delivery keeps retransmitting
	// ICCN until it is acknowledged; the peer's first PPP frames may come
	// before that (an LNS opens the call on ICCN, RFC 2661 §7.4.2).
	e.st = stSessionUp
	resetTimer(e.hello, e.cfg.HelloInterval)
	e.log.Debug("session up", "local_session", e.localSID, "peer_session", e.peerSID)
	e.emit(SessionUp{Session: e.session()})
	return nil
}

// --- LNS (RFC 2661 §7.2 recipient, §7.4.2 LNS incoming call) ---

func (e *engine) onSCCRQ(m *ControlMessage) error {
	if err := e.learnPeer(m); err != nil {
		return err
	}
	tid, err := e.randID()
	if err != nil {
		return err
	}
	e.localTID = tid
	b := newMessage(MsgSCCRP, e.peerTID, 0).
		u16(AVPProtocolVersion, true, ProtocolVersion).
		u32(AVPFramingCapabilities, true, FramingSync|FramingAsync).
		u32(AVPBearerCapabilities, true, BearerDigital|BearerAnalog).
		u16(AVPFirmwareRevision, false, firmwareRevision).
		str(AVPHostName, true, e.cfg.HostName).
		str(AVPVendorName, false, e.cfg.VendorName).
		u16(AVPAssignedTunnelID, true, e.localTID).
		u16(AVPReceiveWindowSize, true, e.cfg.RecvWindow)
	e.st = stWaitCtlConn
	return e.queue(b, MsgSCCRP)
}

func (e *engine) onSCCCN() error {
	e.tunnelUp()
	return nil
}

func (e *engine) onICRQ(m *ControlMessage) error {
	sid, _ := m.Uint16(AVPAssignedSessionID)
	if sid == 0 {
		return e.fail(fmt.Errorf("%w: ICRQ with Assigned Session ID 0", ErrProtocol), nil,
			ResultCode{Result: StopCCNGeneralError, Error: ErrCodeBadValue, HasError: true, Message: "Assigned Session ID 0"})
	}
	lsid, err := e.randID()
	if err != nil {
		return err
	}
	e.peerSID, e.localSID = sid, lsid
	b := newMessage(MsgICRP, e.peerTID, e.peerSID).u16(AVPAssignedSessionID, true, e.localSID)
	e.st = stWaitCallConn
	return e.queue(b, MsgICRP)
}

func (e *engine) onICCN(m *ControlMessage) error {
	e.sequenced = m.Has(AVPSequencingRequired)
	e.st = stSessionUp
	e.log.Debug("session up", "local_session", e.localSID, "peer_session", e.peerSID)
	e.emit(SessionUp{Session: e.session()})
	return nil
}
