package l2tp

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// AVPType is an IETF AVP attribute type (RFC 2661 §4.4, vendor ID 0).
type AVPType uint16

// AVP attribute types (RFC 2661 §4.4.1–§4.4.6).
const (
	AVPMessageType           AVPType = 0  // §4.4.1
	AVPResultCode            AVPType = 1  // §4.4.2
	AVPProtocolVersion       AVPType = 2  // §4.4.3
	AVPFramingCapabilities   AVPType = 3  // §4.4.3
	AVPBearerCapabilities    AVPType = 4  // §4.4.3
	AVPTieBreaker            AVPType = 5  // §4.4.3
	AVPFirmwareRevision      AVPType = 6  // §4.4.3
	AVPHostName              AVPType = 7  // §4.4.3
	AVPVendorName            AVPType = 8  // §4.4.3
	AVPAssignedTunnelID      AVPType = 9  // §4.4.3
	AVPReceiveWindowSize     AVPType = 10 // §4.4.3
	AVPChallenge             AVPType = 11 // §4.4.3
	AVPQ931CauseCode         AVPType = 12 // §4.4.4
	AVPChallengeResponse     AVPType = 13 // §4.4.3
	AVPAssignedSessionID     AVPType = 14 // §4.4.4
	AVPCallSerialNumber      AVPType = 15 // §4.4.4
	AVPMinimumBPS            AVPType = 16 // §4.4.4
	AVPMaximumBPS            AVPType = 17 // §4.4.4
	AVPBearerType            AVPType = 18 // §4.4.4
	AVPFramingType           AVPType = 19 // §4.4.4
	AVPCalledNumber          AVPType = 21 // §4.4.4
	AVPCallingNumber         AVPType = 22 // §4.4.4
	AVPSubAddress            AVPType = 23 // §4.4.4
	AVPTxConnectSpeed        AVPType = 24 // §4.4.4
	AVPPhysicalChannelID     AVPType = 25 // §4.4.4
	AVPInitialRcvdLCPConfReq AVPType = 26 // §4.4.5
	AVPLastSentLCPConfReq    AVPType = 27 // §4.4.5
	AVPLastRcvdLCPConfReq    AVPType = 28 // §4.4.5
	AVPProxyAuthenType       AVPType = 29 // §4.4.5
	AVPProxyAuthenName       AVPType = 30 // §4.4.5
	AVPProxyAuthenChallenge  AVPType = 31 // §4.4.5
	AVPProxyAuthenID         AVPType = 32 // §4.4.5
	AVPProxyAuthenResponse   AVPType = 33 // §4.4.5
	AVPCallErrors            AVPType = 34 // §4.4.6
	AVPACCM                  AVPType = 35 // §4.4.6
	AVPRandomVector          AVPType = 36 // §4.4.1
	AVPPrivateGroupID        AVPType = 37 // §4.4.4
	AVPRxConnectSpeed        AVPType = 38 // §4.4.4
	AVPSequencingRequired    AVPType = 39 // §4.4.4
)

// Capability and type bits (RFC 2661 §4.4.3, §4.4.4; xl2tpd avp.h).
// Note sync = 1, async = 2: some secondary RFC digests have these inverted.
const (
	FramingSync   uint32 = 0x1
	FramingAsync  uint32 = 0x2
	BearerDigital uint32 = 0x1
	BearerAnalog  uint32 = 0x2
)

// ProtocolVersion is the only value of the Protocol Version AVP: version 1,
// revision 0 (RFC 2661 §4.4.3). It is not the header's Ver=2.
const ProtocolVersion uint16 = 0x0100

// AVP header bits (RFC 2661 §4.1).
const (
	avpFlagMandatory = 0x8000
	avpFlagHidden    = 0x4000
	avpLengthMask    = 0x03ff
	avpHeaderLen     = 6
	avpMaxLen        = avpLengthMask
)

// avpSpec describes the value of one IETF AVP type: the allowed value
// length range in bytes (max -1 = up to the 10-bit AVP length limit).
// Hidden AVPs are not length checked (their wire value is the obfuscated
// form, RFC 2661 §4.3).
type avpSpec struct {
	name     string
	min, max int
}

// avpSpecs is indexed by AVPType; an empty name means "not an IETF AVP type
// we know" (RFC 2661 §4.1: unknown with M=1 tears down, M=0 ignored).
var avpSpecs = [...]avpSpec{
	AVPMessageType:           {"Message Type", 2, 2},
	AVPResultCode:            {"Result Code", 2, -1},
	AVPProtocolVersion:       {"Protocol Version", 2, 2},
	AVPFramingCapabilities:   {"Framing Capabilities", 4, 4},
	AVPBearerCapabilities:    {"Bearer Capabilities", 4, 4},
	AVPTieBreaker:            {"Tie Breaker", 8, 8},
	AVPFirmwareRevision:      {"Firmware Revision", 2, 2},
	AVPHostName:              {"Host Name", 1, -1},
	AVPVendorName:            {"Vendor Name", 0, -1},
	AVPAssignedTunnelID:      {"Assigned Tunnel ID", 2, 2},
	AVPReceiveWindowSize:     {"Receive Window Size", 2, 2},
	AVPChallenge:             {"Challenge", 1, -1},
	AVPQ931CauseCode:         {"Q.931 Cause Code", 3, -1},
	AVPChallengeResponse:     {"Challenge Response", 16, 16},
	AVPAssignedSessionID:     {"Assigned Session ID", 2, 2},
	AVPCallSerialNumber:      {"Call Serial Number", 4, 4},
	AVPMinimumBPS:            {"Minimum BPS", 4, 4},
	AVPMaximumBPS:            {"Maximum BPS", 4, 4},
	AVPBearerType:            {"Bearer Type", 4, 4},
	AVPFramingType:           {"Framing Type", 4, 4},
	AVPCalledNumber:          {"Called Number", 0, -1},
	AVPCallingNumber:         {"Calling Number", 0, -1},
	AVPSubAddress:            {"Sub-Address", 0, -1},
	AVPTxConnectSpeed:        {"Tx Connect Speed", 4, 4},
	AVPPhysicalChannelID:     {"Physical Channel ID", 4, 4},
	AVPInitialRcvdLCPConfReq: {"Initial Received LCP CONFREQ", 0, -1},
	AVPLastSentLCPConfReq:    {"Last Sent LCP CONFREQ", 0, -1},
	AVPLastRcvdLCPConfReq:    {"Last Received LCP CONFREQ", 0, -1},
	AVPProxyAuthenType:       {"Proxy Authen Type", 2, 2},
	AVPProxyAuthenName:       {"Proxy Authen Name", 0, -1},
	AVPProxyAuthenChallenge:  {"Proxy Authen Challenge", 0, -1},
	AVPProxyAuthenID:         {"Proxy Authen ID", 2, 2},
	AVPProxyAuthenResponse:   {"Proxy Authen Response", 0, -1},
	AVPCallErrors:            {"Call Errors", 26, 26},
	AVPACCM:                  {"ACCM", 10, 10},
	AVPRandomVector:          {"Random Vector", 1, -1},
	AVPPrivateGroupID:        {"Private Group ID", 0, -1},
	AVPRxConnectSpeed:        {"Rx Connect Speed", 4, 4},
	AVPSequencingRequired:    {"Sequencing Required", 0, 0},
}

func (t AVPType) spec() (avpSpec, bool) {
	if int(t) < len(avpSpecs) && avpSpecs[t].name != "" {
		return avpSpecs[t], true
	}
	return avpSpec{}, false
}

func (t AVPType) String() string {
	if s, ok := t.spec(); ok {
		return s.name
	}
	return fmt.Sprintf("AVP(%d)", uint16(t))
}

// AVP is one attribute-value pair as received. Value aliases the packet.
type AVP struct {
	Mandatory bool // M bit
	Hidden    bool // H bit (value obfuscated with the tunnel secret, §4.3)
	VendorID  uint16
	Type      AVPType
	Value     []byte
}

// Known reports whether this is an IETF AVP type we understand.
func (a AVP) Known() bool {
	_, ok := a.Type.spec()
	return a.VendorID == 0 && ok
}

func (a AVP) String() string {
	if a.VendorID != 0 {
		return fmt.Sprintf("vendor %d AVP %d", a.VendorID, uint16(a.Type))
	}
	return a.Type.String()
}

// checkLength validates the value length of a known, unhidden IETF AVP.
func (a AVP) checkLength() error {
	if a.VendorID != 0 || a.Hidden {
		return nil
	}
	s, ok := a.Type.spec()
	if !ok {
		return nil
	}
	if len(a.Value) < s.min || (s.max >= 0 && len(a.Value) > s.max) {
		return fmt.Errorf("%w: %s AVP value length %d", ErrMalformed, s.name, len(a.Value))
	}
	return nil
}

// parseAVP decodes one AVP at the start of b and returns it with the number
// of bytes it occupies (RFC 2661 §4.1). Reserved bits are ignored.
func parseAVP(b []byte) (AVP, int, error) {
	if len(b) < avpHeaderLen {
		return AVP{}, 0, errAVPShort
	}
	w := binary.BigEndian.Uint16(b)
	n := int(w & avpLengthMask)
	if n < avpHeaderLen || n > len(b) {
		return AVP{}, 0, errAVPLength
	}
	return AVP{
		Mandatory: w&avpFlagMandatory != 0,
		Hidden:    w&avpFlagHidden != 0,
		VendorID:  binary.BigEndian.Uint16(b[2:]),
		Type:      AVPType(binary.BigEndian.Uint16(b[4:])),
		Value:     b[avpHeaderLen:n],
	}, n, nil
}

// ResultCode is the decoded Result Code AVP (RFC 2661 §4.4.2):
// result(2) [error(2) [message]]. The error code is optional (an AVP of
// 8 bytes total is valid, xl2tpd PR #175).
type ResultCode struct {
	Result   uint16
	Error    uint16
	HasError bool
	Message  string
}

// StopCCN result codes (RFC 2661 §4.4.2).
const (
	StopCCNGeneralClear  uint16 = 1 // General request to clear control connection
	StopCCNGeneralError  uint16 = 2 // General error, Error Code indicates the problem
	StopCCNAlreadyExists uint16 = 3
	StopCCNNotAuthorized uint16 = 4
	StopCCNBadVersion    uint16 = 5
	StopCCNShuttingDown  uint16 = 6
	StopCCNFSMError      uint16 = 7
)

// CDN result codes (RFC 2661 §4.4.2).
const (
	CDNLostCarrier    uint16 = 1
	CDNGeneralError   uint16 = 2
	CDNAdministrative uint16 = 3
)

// General error codes (RFC 2661 §4.4.2).
const (
	ErrCodeNone           uint16 = 0
	ErrCodeNoControlConn  uint16 = 1
	ErrCodeBadLength      uint16 = 2
	ErrCodeBadValue       uint16 = 3
	ErrCodeNoResources    uint16 = 4
	ErrCodeBadSessionID   uint16 = 5
	ErrCodeVendorSpecific uint16 = 6
	ErrCodeTryAnother     uint16 = 7
	ErrCodeUnknownMandAVP uint16 = 8
)

var stopCCNResults = [...]string{
	1: "general request to clear control connection",
	2: "general error",
	3: "control channel already exists",
	4: "requester not authorized",
	5: "protocol version not supported",
	6: "requester is being shut down",
	7: "finite state machine error",
}

var cdnResults = [...]string{
	1:  "lost carrier",
	2:  "general error",
	3:  "administrative reasons",
	4:  "temporary lack of facilities",
	5:  "permanent lack of facilities",
	6:  "invalid destination",
	7:  "no carrier",
	8:  "busy",
	9:  "no dial tone",
	10: "timeout",
	11: "no appropriate framing",
}

var errorCodes = [...]string{
	0: "no general error",
	1: "no control connection exists yet",
	2: "length is wrong",
	3: "field value out of range or reserved field non-zero",
	4: "insufficient resources",
	5: "invalid session ID",
	6: "vendor-specific error",
	7: "try another",
	8: "unknown mandatory AVP received",
}

// parseResultCode decodes a Result Code AVP value.
func parseResultCode(v []byte) (ResultCode, error) {
	if len(v) < 2 {
		return ResultCode{}, fmt.Errorf("%w: Result Code AVP value length %d", ErrMalformed, len(v))
	}
	rc := ResultCode{Result: binary.BigEndian.Uint16(v)}
	if len(v) >= 4 {
		rc.HasError = true
		rc.Error = binary.BigEndian.Uint16(v[2:])
		rc.Message = printable(v[4:])
	} else if len(v) == 3 {
		return ResultCode{}, fmt.Errorf("%w: Result Code AVP value length 3", ErrMalformed)
	}
	return rc, nil
}

// describe renders the result code for the message type it came in.
func (rc ResultCode) describe(mt MessageType) string {
	var b strings.Builder
	table := stopCCNResults[:]
	if mt == MsgCDN {
		table = cdnResults[:]
	}
	fmt.Fprintf(&b, "result %d", rc.Result)
	if int(rc.Result) < len(table) && table[rc.Result] != "" {
		fmt.Fprintf(&b, " (%s)", table[rc.Result])
	}
	if rc.HasError {
		fmt.Fprintf(&b, ", error %d", rc.Error)
		if int(rc.Error) < len(errorCodes) && rc.Error != 0 {
			fmt.Fprintf(&b, " (%s)", errorCodes[rc.Error])
		}
	}
	if rc.Message != "" {
		fmt.Fprintf(&b, ": %q", rc.Message)
	}
	return b.String()
}

// printable turns an advisory message or host name into a safe string:
// trailing NULs dropped (SoftEther pads), control bytes replaced.
func printable(b []byte) string {
	b = []byte(strings.TrimRight(string(b), "\x00"))
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return strings.ToValidUTF8(string(b), "?")
}
