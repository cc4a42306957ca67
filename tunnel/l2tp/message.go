package l2tp

import (
	"encoding/binary"
	"fmt"
)

// MessageType is the value of the Message Type AVP (RFC 2661 §3.2).
type MessageType uint16

// Control message types (RFC 2661 §3.2). Zero means ZLB (no AVPs).
const (
	MsgZLB     MessageType = 0
	MsgSCCRQ   MessageType = 1
	MsgSCCRP   MessageType = 2
	MsgSCCCN   MessageType = 3
	MsgStopCCN MessageType = 4
	MsgHELLO   MessageType = 6
	MsgOCRQ    MessageType = 7
	MsgOCRP    MessageType = 8
	MsgOCCN    MessageType = 9
	MsgICRQ    MessageType = 10
	MsgICRP    MessageType = 11
	MsgICCN    MessageType = 12
	MsgCDN     MessageType = 14
	MsgWEN     MessageType = 15
	MsgSLI     MessageType = 16
)

type msgScope uint8

const (
	scopeTunnel  msgScope = iota // §4.1: unknown M=1 AVP clears the tunnel
	scopeSession                 // §4.1: unknown M=1 AVP clears the session
)

// msgRule is the per-message AVP rule from RFC 2661 §6: which AVPs MUST be
// present (Message Type is implied). AVPs not listed are accepted.
type msgRule struct {
	name     string
	section  string
	scope    msgScope
	required []AVPType
}

var msgRules = [...]msgRule{
	MsgSCCRQ: {"SCCRQ", "§6.1", scopeTunnel,
		[]AVPType{AVPProtocolVersion, AVPHostName, AVPFramingCapabilities, AVPAssignedTunnelID}},
	MsgSCCRP: {"SCCRP", "§6.2", scopeTunnel,
		[]AVPType{AVPProtocolVersion, AVPFramingCapabilities, AVPHostName, AVPAssignedTunnelID}},
	MsgSCCCN:   {"SCCCN", "§6.3", scopeTunnel, nil},
	MsgStopCCN: {"StopCCN", "§6.4", scopeTunnel, []AVPType{AVPAssignedTunnelID, AVPResultCode}},
	MsgHELLO:   {"HELLO", "§6.5", scopeTunnel, nil},
	MsgOCRQ: {"OCRQ", "§6.9", scopeSession,
		[]AVPType{AVPAssignedSessionID, AVPCallSerialNumber, AVPMinimumBPS, AVPMaximumBPS,
			AVPBearerType, AVPFramingType, AVPCalledNumber}},
	MsgOCRP: {"OCRP", "§6.10", scopeSession, []AVPType{AVPAssignedSessionID}},
	MsgOCCN: {"OCCN", "§6.11", scopeSession, []AVPType{AVPTxConnectSpeed, AVPFramingType}},
	MsgICRQ: {"ICRQ", "§6.6", scopeSession, []AVPType{AVPAssignedSessionID, AVPCallSerialNumber}},
	MsgICRP: {"ICRP", "§6.7", scopeSession, []AVPType{AVPAssignedSessionID}},
	MsgICCN: {"ICCN", "§6.8", scopeSession, []AVPType{AVPTxConnectSpeed, AVPFramingType}},
	MsgCDN:  {"CDN", "§6.12", scopeSession, []AVPType{AVPResultCode, AVPAssignedSessionID}},
	MsgWEN:  {"WEN", "§6.13", scopeSession, []AVPType{AVPCallErrors}},
	MsgSLI:  {"SLI", "§6.14", scopeSession, []AVPType{AVPACCM}},
}

func (t MessageType) rule() (msgRule, bool) {
	if int(t) < len(msgRules) && msgRules[t].name != "" {
		return msgRules[t], true
	}
	return msgRule{}, false
}

func (t MessageType) String() string {
	if t == MsgZLB {
		return "ZLB"
	}
	if r, ok := t.rule(); ok {
		return r.name
	}
	return fmt.Sprintf("message type %d", uint16(t))
}

// Header flag bits (RFC 2661 §3.1).
const (
	flagT       = 0x8000
	flagL       = 0x4000
	flagS       = 0x0800
	flagO       = 0x0200
	flagP       = 0x0100
	versionMask = 0x000f
	version2    = 2

	controlFlags     = flagT | flagL | flagS | version2 // 0xC802
	controlHeaderLen = 12
)

// Header is the fixed 12-byte control message header (RFC 2661 §3.1).
// TunnelID and SessionID are the RECIPIENT's IDs.
type Header struct {
	Length    uint16
	TunnelID  uint16
	SessionID uint16
	Ns, Nr    uint16
}

// ParseHeader decodes a control message header. It requires T=1, L=1, S=1,
// O=0, Ver=2 (RFC 2661 §3.1) and 12 <= Length <= len(pkt).
func ParseHeader(pkt []byte) (Header, error) {
	if len(pkt) < controlHeaderLen {
		return Header{}, errHdrShort
	}
	w := binary.BigEndian.Uint16(pkt)
	if w&(flagT|flagL|flagS|flagO) != flagT|flagL|flagS || w&versionMask != version2 {
		return Header{}, errHdrFlags
	}
	h := Header{
		Length:    binary.BigEndian.Uint16(pkt[2:]),
		TunnelID:  binary.BigEndian.Uint16(pkt[4:]),
		SessionID: binary.BigEndian.Uint16(pkt[6:]),
		Ns:        binary.BigEndian.Uint16(pkt[8:]),
		Nr:        binary.BigEndian.Uint16(pkt[10:]),
	}
	if h.Length < controlHeaderLen || int(h.Length) > len(pkt) {
		return Header{}, errHdrLength
	}
	return h, nil
}

// IsZLB reports whether the header is a zero-length body acknowledgement.
func (h Header) IsZLB() bool { return h.Length == controlHeaderLen }

// ControlMessage is a parsed control message. AVP values alias the packet.
type ControlMessage struct {
	Header
	Type MessageType // MsgZLB for a ZLB
	// TypeMandatory is the M bit of the Message Type AVP: an unknown message
	// type with M=1 must clear the tunnel, with M=0 it is ignored (§3.2).
	TypeMandatory bool
	AVPs          []AVP
}

// ParseControl decodes a control message: header and AVP framing, the
// Message Type AVP first (RFC 2661 §4.1), and value lengths of every known
// unhidden AVP. Bytes after the header's Length are ignored. It does not
// check per-message required AVPs; call Validate for that.
func ParseControl(pkt []byte) (*ControlMessage, error) {
	h, err := ParseHeader(pkt)
	if err != nil {
		return nil, err
	}
	m := &ControlMessage{Header: h}
	body := pkt[controlHeaderLen:h.Length]
	if len(body) == 0 {
		return m, nil
	}
	first, n, err := parseAVP(body)
	if err != nil {
		return nil, err
	}
	if first.VendorID != 0 || first.Type != AVPMessageType || first.Hidden || len(first.Value) != 2 {
		return nil, errAVPFirst
	}
	m.Type = MessageType(binary.BigEndian.Uint16(first.Value))
	m.TypeMandatory = first.Mandatory
	if m.Type == MsgZLB {
		return nil, fmt.Errorf("%w: Message Type 0", ErrMalformed)
	}
	// At most len/6 AVPs follow: the allocation is bounded by the input.
	m.AVPs = make([]AVP, 0, 1+(len(body)-n)/avpHeaderLen)
	m.AVPs = append(m.AVPs, first)
	for off := n; off < len(body); off += n {
		var a AVP
		a, n, err = parseAVP(body[off:])
		if err != nil {
			return nil, err
		}
		if err := a.checkLength(); err != nil {
			return nil, err
		}
		m.AVPs = append(m.AVPs, a)
	}
	return m, nil
}

// Validate checks the RFC 2661 §6 rules for the message type: every
// required AVP present. Unknown message types pass (the caller decides by
// TypeMandatory).
func (m *ControlMessage) Validate() error {
	r, ok := m.Type.rule()
	if !ok {
		return nil
	}
	for _, t := range r.required {
		if _, ok := m.find(t); !ok {
			return fmt.Errorf("%w: %s without required %s AVP (RFC 2661 %s)", ErrProtocol, r.name, t, r.section)
		}
	}
	return nil
}

// UnknownMandatory returns the first AVP with the M bit set that is not an
// IETF AVP we know (RFC 2661 §4.1).
func (m *ControlMessage) UnknownMandatory() (AVP, bool) {
	for _, a := range m.AVPs {
		if a.Mandatory && !a.Known() {
			return a, true
		}
	}
	return AVP{}, false
}

// UsesTunnelAuth reports whether the message carries a hidden AVP (§4.3) or
// a Challenge / Challenge Response AVP (§5.1.1), which need a tunnel secret.
func (m *ControlMessage) UsesTunnelAuth() bool {
	for _, a := range m.AVPs {
		if a.Hidden {
			return true
		}
		if a.VendorID == 0 && (a.Type == AVPChallenge || a.Type == AVPChallengeResponse) {
			return true
		}
	}
	return false
}

func (m *ControlMessage) find(t AVPType) (AVP, bool) {
	for _, a := range m.AVPs {
		if a.VendorID == 0 && a.Type == t {
			return a, true
		}
	}
	return AVP{}, false
}

// Find returns the first IETF AVP of type t.
func (m *ControlMessage) Find(t AVPType) (AVP, bool) { return m.find(t) }

// Uint16 returns the value of a 2-byte unhidden IETF AVP.
func (m *ControlMessage) Uint16(t AVPType) (uint16, bool) {
	a, ok := m.find(t)
	if !ok || a.Hidden || len(a.Value) != 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(a.Value), true
}

// Uint32 returns the value of a 4-byte unhidden IETF AVP.
func (m *ControlMessage) Uint32(t AVPType) (uint32, bool) {
	a, ok := m.find(t)
	if !ok || a.Hidden || len(a.Value) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(a.Value), true
}

// Text returns the value of an unhidden string AVP (Host Name, Vendor Name), sanitised.
func (m *ControlMessage) Text(t AVPType) string {
	a, ok := m.find(t)
	if !ok || a.Hidden {
		return ""
	}
	return printable(a.Value)
}

// Has reports whether an IETF AVP of type t is present.
func (m *ControlMessage) Has(t AVPType) bool {
	_, ok := m.find(t)
	return ok
}

// ResultCode decodes the Result Code AVP, if present and well formed.
func (m *ControlMessage) ResultCode() (ResultCode, bool) {
	a, ok := m.find(AVPResultCode)
	if !ok || a.Hidden {
		return ResultCode{}, false
	}
	rc, err := parseResultCode(a.Value)
	return rc, err == nil
}

// msgBuilder encodes one control message. Ns and Nr are left zero; the
// reliable-delivery layer stamps them at send time (putNsNr).
type msgBuilder struct {
	b   []byte
	err error
}

// newMessage starts a control message of type mt addressed to the peer's
// tunnelID/sessionID; the Message Type AVP is written first (§4.1).
func newMessage(mt MessageType, tunnelID, sessionID uint16) *msgBuilder {
	b := &msgBuilder{b: make([]byte, controlHeaderLen, 128)}
	binary.BigEndian.PutUint16(b.b[0:], controlFlags)
	binary.BigEndian.PutUint16(b.b[4:], tunnelID)
	binary.BigEndian.PutUint16(b.b[6:], sessionID)
	b.u16(AVPMessageType, true, uint16(mt))
	return b
}

func (b *msgBuilder) avp(t AVPType, mandatory bool, v []byte) *msgBuilder {
	n := avpHeaderLen + len(v)
	if n > avpMaxLen {
		b.err = errAVPTooLong
		return b
	}
	w := uint16(n)
	if mandatory {
		w |= avpFlagMandatory
	}
	b.b = binary.BigEndian.AppendUint16(b.b, w)
	b.b = binary.BigEndian.AppendUint16(b.b, 0)
	b.b = binary.BigEndian.AppendUint16(b.b, uint16(t))
	b.b = append(b.b, v...)
	return b
}

func (b *msgBuilder) u16(t AVPType, mandatory bool, v uint16) *msgBuilder {
	return b.avp(t, mandatory, binary.BigEndian.AppendUint16(nil, v))
}

func (b *msgBuilder) u32(t AVPType, mandatory bool, v uint32) *msgBuilder {
	return b.avp(t, mandatory, binary.BigEndian.AppendUint32(nil, v))
}

func (b *msgBuilder) str(t AVPType, mandatory bool, s string) *msgBuilder {
	return b.avp(t, mandatory, []byte(s))
}

func (b *msgBuilder) resultCode(rc ResultCode) *msgBuilder {
	v := binary.BigEndian.AppendUint16(nil, rc.Result)
	if rc.HasError || rc.Message != "" {
		v = binary.BigEndian.AppendUint16(v, rc.Error)
		v = append(v, rc.Message...)
	}
	return b.avp(AVPResultCode, true, v)
}

// bytes finishes the message: sets the Length field.
func (b *msgBuilder) bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if len(b.b) > 0xffff {
		return nil, errBufferTooBig
	}
	binary.BigEndian.PutUint16(b.b[2:], uint16(len(b.b)))
	return b.b, nil
}

// putNsNr stamps the sequence numbers into an encoded control message.
func putNsNr(pkt []byte, ns, nr uint16) {
	binary.BigEndian.PutUint16(pkt[8:], ns)
	binary.BigEndian.PutUint16(pkt[10:], nr)
}

// appendZLB appends a ZLB acknowledgement (§5.8): header only, Ns is the
// next Ns we will send (not consumed).
func appendZLB(dst []byte, tunnelID, sessionID, ns, nr uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, controlFlags)
	dst = binary.BigEndian.AppendUint16(dst, controlHeaderLen)
	dst = binary.BigEndian.AppendUint16(dst, tunnelID)
	dst = binary.BigEndian.AppendUint16(dst, sessionID)
	dst = binary.BigEndian.AppendUint16(dst, ns)
	return binary.BigEndian.AppendUint16(dst, nr)
}
