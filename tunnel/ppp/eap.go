package ppp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/l2tpproxy/l2tpproxy/crypto/mschap"
)

// EAP codes (RFC 3748 §4) and the method types we know (RFC 3748 §5; 26 is
// EAP-MSCHAPv2, draft-kamath-pppext-eap-mschapv2-02 §2).
const (
	eapRequest  = 1
	eapResponse = 2
	eapSuccess  = 3
	eapFailure  = 4

	eapTypeIdentity     = 1
	eapTypeNotification = 2
	eapTypeNak          = 3 // Legacy Nak, RFC 3748 §5.3.1
	eapTypeMD5          = 4
	eapTypeTLS          = 13
	eapTypeMSCHAPv2     = 26
)

// EAP-MSCHAPv2 OpCodes (draft-kamath-pppext-eap-mschapv2-02 §2).
const (
	msOpChallenge = 1
	msOpResponse  = 2
	msOpSuccess   = 3
	msOpFailure   = 4
)

// eapTypeName names an EAP method type for errors.
func eapTypeName(t byte) string {
	switch t {
	case eapTypeMD5:
		return "EAP-MD5"
	case 5:
		return "EAP-OTP"
	case 6:
		return "EAP-GTC"
	case eapTypeTLS:
		return "EAP-TLS"
	case 21:
		return "EAP-TTLS"
	case 25:
		return "PEAP"
	case eapTypeMSCHAPv2:
		return "EAP-MSCHAPv2"
	case 254:
		return "an expanded EAP type"
	}
	return fmt.Sprintf("EAP type %d", t)
}

// parseEAPTyped splits the data of an EAP Request or Response into Type and
// Type-Data (RFC 3748 §4.1).
func parseEAPTyped(data []byte) (typ byte, typeData []byte, err error) {
	if len(data) < 1 {
		return 0, nil, fmt.Errorf("%w: EAP Request/Response without Type", ErrMalformed)
	}
	return data[0], data[1:], nil
}

// msPacket is an EAP-MSCHAPv2 packet: OpCode, MS-CHAPv2-ID, MS-Length (from
// OpCode to the end) and the rest (draft-kamath §2). A peer's Success and
// Failure Responses are the OpCode alone (id and data then zero).
type msPacket struct {
	op, id byte
	data   []byte
}

func parseEAPMSCHAPv2(td []byte) (msPacket, error) {
	if len(td) == 1 && (td[0] == msOpSuccess || td[0] == msOpFailure) {
		return msPacket{op: td[0]}, nil
	}
	if len(td) < 4 {
		return msPacket{}, fmt.Errorf("%w: short EAP-MSCHAPv2 packet", ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(td[2:]))
	if n < 4 || n > len(td) {
		return msPacket{}, fmt.Errorf("%w: EAP-MSCHAPv2 MS-Length %d of %d", ErrMalformed, n, len(td))
	}
	return msPacket{op: td[0], id: td[1], data: td[4:n]}, nil
}

// appendMSPacket appends Type 26 | OpCode | MS-CHAPv2-ID | MS-Length | parts.
func appendMSPacket(b []byte, op, id byte, parts ...[]byte) []byte {
	n := 4
	for _, p := range parts {
		n += len(p)
	}
	b = append(b, eapTypeMSCHAPv2, op, id, byte(n>>8), byte(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// maxNameLen bounds the Name we put in CHAP-style Responses so that a packet
// always fits the smallest MRU we accept.
const maxNameLen = 200

// eapClient is the peer side of one EAP conversation (RFC 3748 §4.1: the
// authenticator sends Requests and retransmits them; the peer answers each
// one and resends its Response, unchanged, to a duplicate).
type eapClient struct {
	have     bool
	reqID    byte
	req      []byte // data of the last Request answered
	resp     []byte // our Response to it (Type | Type-Data)
	method   AuthMethod
	verified bool // EAP-MSCHAPv2: the server's authenticator response checked
	text     string
	nakked   byte // the last method type we declined, 0 if none
}

func (c *Client) eapInput(p packet) error {
	if c.authDone {
		return nil
	}
	switch p.code {
	case eapRequest:
		e := &c.eap
		if e.have && p.id == e.reqID && bytes.Equal(p.data, e.req) {
			c.sendPacket(protoEAP, eapResponse, p.id, e.resp)
			return nil
		}
		typ, td, err := parseEAPTyped(p.data)
		if err != nil {
			c.log.Debug("ppp: bad EAP Request", "err", err)
			return nil
		}
		resp, fail := c.eapAnswer(p.id, typ, td)
		if resp == nil {
			return nil
		}
		e.have, e.reqID = true, p.id
		e.req = append(e.req[:0], p.data...)
		e.resp = append(e.resp[:0], resp...)
		c.sendPacket(protoEAP, eapResponse, p.id, resp)
		c.authDL = c.clk.Now().Add(c.restart * time.Duration(c.maxConfigure))
		if fail != nil {
			return c.authFailed(fail)
		}
	case eapSuccess:
		// RFC 3748 §4.2. A server that lets us in without a method is its
		// business, but EAP-MSCHAPv2 is mutual: the server must have proved
		// that it knows the password before we accept.
		if c.eap.method == AuthEAPMSCHAPv2 && !c.eap.verified {
			return c.authFailed(fmt.Errorf("%w: EAP-Success before the server proved it knows the password", ErrAuthFailed))
		}
		m := c.eap.method
		if m == AuthNone {
			m = AuthEAP
		}
		return c.authSucceeded(m, c.eap.text)
	case eapFailure:
		if c.eap.method == AuthNone && c.eap.nakked != 0 {
			return c.authFailed(&AuthRefusedError{Name: eapTypeName(c.eap.nakked)})
		}
		return c.authFailed(fmt.Errorf("%w: the server sent EAP-Failure", ErrAuthFailed))
	}
	return nil
}

// eapAnswer returns our Response (Type | Type-Data) to a Request of type typ,
// nil to ignore it, and an error when the exchange failed after the
// Response is sent.
func (c *Client) eapAnswer(id, typ byte, td []byte) (resp []byte, fail error) {
	user := []byte(c.cfg.User)
	if len(user) > maxNameLen {
		user = user[:maxNameLen]
	}
	switch typ {
	case eapTypeIdentity: // RFC 3748 §5.1; the Type-Data is a displayable prompt
		return append([]byte{eapTypeIdentity}, user...), nil
	case eapTypeNotification: // RFC 3748 §5.2: show it, answer with an empty Response
		c.log.Info("ppp: EAP notification from the server", "text", printable(td))
		return []byte{eapTypeNotification}, nil
	case eapTypeNak:
		return nil, nil // only valid in a Response
	case eapTypeMD5: // RFC 3748 §5.4: CHAP's Value-Size | Value | Name, MD5 as in RFC 1994
		v, err := parseCHAPValue(td)
		if err != nil {
			c.log.Debug("ppp: bad EAP MD5-Challenge", "err", err)
			return nil, nil
		}
		r := mschap.CHAPMD5Response(id, c.cfg.Password, v.value)
		c.eap.method = AuthEAPMD5
		return append(append([]byte{eapTypeMD5, byte(len(r))}, r[:]...), user...), nil
	case eapTypeMSCHAPv2:
		return c.eapMSCHAPv2(td, user)
	}
	// A method we do not implement: Legacy Nak with the ones we do, in
	// order of preference (RFC 3748 §5.3.1).
	c.log.Info("ppp: declining the server's EAP method", "method", eapTypeName(typ))
	c.eap.nakked = typ
	return []byte{eapTypeNak, eapTypeMSCHAPv2, eapTypeMD5}, nil
}

func (c *Client) eapMSCHAPv2(td, user []byte) ([]byte, error) {
	ms, err := parseEAPMSCHAPv2(td)
	if err != nil {
		c.log.Debug("ppp: bad EAP-MSCHAPv2 Request", "err", err)
		return nil, nil
	}
	switch ms.op {
	case msOpChallenge: // Value-Size(16) | Challenge | Name, as in RFC 2759 §3
		v, err := parseCHAPValue(ms.data)
		if err != nil || len(v.value) != mschap.ChallengeLen {
			c.log.Debug("ppp: bad EAP-MSCHAPv2 Challenge", "len", len(ms.data))
			return nil, nil
		}
		copy(c.authChal[:], v.value)
		if _, err := io.ReadFull(c.rnd, c.peerChal[:]); err != nil {
			return nil, nil // no randomness: let the server time out rather than answer badly
		}
		c.ntResp = mschap.GenerateNTResponse(c.authChal, c.peerChal, c.cfg.User, c.cfg.Password)
		rv := mschap.NewResponseValue(c.peerChal, c.ntResp)
		c.eap.method, c.eap.verified = AuthEAPMSCHAPv2, false
		return appendMSPacket(nil, msOpResponse, ms.id, []byte{byte(len(rv))}, rv[:], user), nil
	case msOpSuccess: // the authenticator response "S=... M=..." (RFC 2759 §5)
		if c.eap.method != AuthEAPMSCHAPv2 {
			return nil, nil
		}
		ok, text := mschap.CheckAuthenticatorResponse(c.cfg.Password, c.ntResp, c.peerChal, c.authChal, c.cfg.User, ms.data)
		if !ok {
			return []byte{eapTypeMSCHAPv2, msOpFailure}, fmt.Errorf("%w: server failed to prove it knows the password", ErrAuthFailed)
		}
		c.eap.verified, c.eap.text = true, printable([]byte(text))
		return []byte{eapTypeMSCHAPv2, msOpSuccess}, nil
	case msOpFailure: // "E=... R=... C=... V=... M=..." (RFC 2759 §6)
		if c.eap.method != AuthEAPMSCHAPv2 {
			return nil, nil
		}
		return []byte{eapTypeMSCHAPv2, msOpFailure}, fmt.Errorf("%w: %s", ErrAuthFailed, printable(ms.data))
	}
	return nil, nil
}
