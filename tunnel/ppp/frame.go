package ppp

import (
	"encoding/binary"
	"fmt"
)

// PPP protocol numbers (RFC 1661 §2, IANA "PPP DLL Protocol Numbers").
const (
	ProtoIPv4   uint16 = 0x0021
	ProtoIPv6   uint16 = 0x0057
	protoVJComp uint16 = 0x002d // Van Jacobson compressed TCP/IP (RFC 1144)
	protoVJRaw  uint16 = 0x002f // Van Jacobson uncompressed TCP/IP
	protoIPCP   uint16 = 0x8021
	protoIPV6CP uint16 = 0x8057
	protoCCP    uint16 = 0x80fd
	protoLCP    uint16 = 0xc021
	protoPAP    uint16 = 0xc023
	protoCHAP   uint16 = 0xc223
	protoEAP    uint16 = 0xc227
)

// Control packet codes shared by LCP and IPCP (RFC 1661 §5).
const (
	codeConfReq   = 1
	codeConfAck   = 2
	codeConfNak   = 3
	codeConfRej   = 4
	codeTermReq   = 5
	codeTermAck   = 6
	codeCodeRej   = 7
	codeProtoRej  = 8 // LCP only
	codeEchoReq   = 9 // LCP only
	codeEchoReply = 10
	codeDiscard   = 11
	codeIdent     = 12 // RFC 1570 Identification
	codeTimeRem   = 13 // RFC 1570 Time-Remaining
)

// LCP option types (RFC 1661 §6).
const (
	lcpOptMRU   = 1
	lcpOptACCM  = 2
	lcpOptAuth  = 3
	lcpOptMagic = 5
	lcpOptPFC   = 7
	lcpOptACFC  = 8
)

// IPCP option types (RFC 1332 §3, RFC 1877 §1).
const (
	ipcpOptVJ   = 2
	ipcpOptAddr = 3
	ipcpOptDNS1 = 129
	ipcpOptDNS2 = 131
)

// CHAP algorithm numbers in the LCP Auth-Protocol option (RFC 1994 §3, RFC 2759 §2).
const (
	chapAlgMD5      = 5
	chapAlgMSCHAPv2 = 0x81
)

// DecodeFrame splits a received PPP frame into protocol number and
// information field, in place and without allocating. It strips an optional
// Address/Control "FF 03" (ACFC, RFC 1661 §6.6) and accepts a 1-byte
// protocol field (PFC, RFC 1661 §6.5). A valid protocol number has an odd
// low octet and an even high octet (RFC 1661 §2).
func DecodeFrame(b []byte) (proto uint16, info []byte, err error) {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if b[0]&1 == 1 { // compressed: the only octet is the (odd) low octet
		return uint16(b[0]), b[1:], nil
	}
	if len(b) < 2 || b[1]&1 == 0 {
		return 0, nil, fmt.Errorf("%w: bad protocol field", ErrMalformed)
	}
	return binary.BigEndian.Uint16(b), b[2:], nil
}

// packet is an LCP/NCP/PAP/CHAP packet: Code, Identifier, Length, Data
// (RFC 1661 §5, RFC 1334 §2.2, RFC 1994 §4). Data aliases the input.
type packet struct {
	code, id byte
	data     []byte
}

// parsePacket parses a control packet. Octets past Length are padding and
// are ignored (RFC 1661 §5); a Length below 4 or beyond the input is an error.
func parsePacket(b []byte) (packet, error) {
	if len(b) < 4 {
		return packet{}, fmt.Errorf("%w: short control packet", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < 4 || n > len(b) {
		return packet{}, fmt.Errorf("%w: control packet length %d of %d", ErrMalformed, n, len(b))
	}
	return packet{code: b[0], id: b[1], data: b[4:n]}, nil
}

// nextOption splits the first Type-Length-Value option off opts
// (RFC 1661 §6). raw is the whole option including its header.
func nextOption(opts []byte) (typ byte, val, raw, rest []byte, err error) {
	if len(opts) < 2 {
		return 0, nil, nil, nil, fmt.Errorf("%w: truncated option", ErrMalformed)
	}
	n := int(opts[1])
	if n < 2 || n > len(opts) {
		return 0, nil, nil, nil, fmt.Errorf("%w: option %d length %d", ErrMalformed, opts[0], n)
	}
	return opts[0], opts[2:n], opts[:n], opts[n:], nil
}

// checkOptions reports whether opts is a well-formed sequence of options.
func checkOptions(opts []byte) error {
	for len(opts) > 0 {
		var err error
		if _, _, _, opts, err = nextOption(opts); err != nil {
			return err
		}
	}
	return nil
}

// chapValue is the body of a CHAP Challenge or Response (RFC 1994 §4.1):
// Value-Size, Value, Name.
type chapValue struct {
	value, name []byte
}

func parseCHAPValue(data []byte) (chapValue, error) {
	if len(data) < 1 || int(data[0]) == 0 || 1+int(data[0]) > len(data) {
		return chapValue{}, fmt.Errorf("%w: bad CHAP Value-Size", ErrMalformed)
	}
	n := 1 + int(data[0])
	return chapValue{value: data[1:n], name: data[n:]}, nil
}

// parsePAPRequest parses a PAP Authenticate-Request body (RFC 1334 §2.2.1).
func parsePAPRequest(data []byte) (peerID, password []byte, err error) {
	if len(data) < 1 || 1+int(data[0]) >= len(data) {
		return nil, nil, fmt.Errorf("%w: bad PAP Peer-ID length", ErrMalformed)
	}
	n := 1 + int(data[0])
	peerID = data[1:n]
	pl := int(data[n])
	if n+1+pl > len(data) {
		return nil, nil, fmt.Errorf("%w: bad PAP Passwd-Length", ErrMalformed)
	}
	return peerID, data[n+1 : n+1+pl], nil
}

// parsePAPReply parses a PAP Authenticate-Ack/Nak body: Msg-Length, Message
// (RFC 1334 §2.2.2). A missing or overlong message is tolerated.
func parsePAPReply(data []byte) []byte {
	if len(data) < 1 {
		return nil
	}
	n := int(data[0])
	if n > len(data)-1 {
		n = len(data) - 1
	}
	return data[1 : 1+n]
}

func appendPacket(b []byte, proto uint16, code, id byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	b = binary.BigEndian.AppendUint16(b, proto)
	b = append(b, code, id, byte(n>>8), byte(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
