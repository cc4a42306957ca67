// Package ppp implements the PPP layer of an L2TP/IPsec client: LCP
// (RFC 1661), PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAPv2 (RFC 2759), EAP
// (RFC 3748: Identity, MD5-Challenge, EAP-MSCHAPv2) and IPCP with DNS options
// (RFC 1332, RFC 1877), IPv6CP (RFC 5072, optional). Client is the production role;
// Server is a small authenticator/NCP peer for in-process tests.
//
// Frames handed to the send callback are protocol(2 bytes) | information;
// the caller prepends FF 03 and the L2TP header. Received frames may carry
// FF 03 or not and may use a 1-byte protocol field.
//
// Each Client or Server is driven by one goroutine (Run) that owns all state
// and selects over received frames, a single clock timer and ctx.
package ppp

import (
	"errors"
	"net/netip"
	"strings"
)

// AuthMethod is a PPP authentication protocol.
type AuthMethod uint8

// Authentication methods. AuthNone means the peer did not ask us to
// authenticate (client) or no authentication is requested (server).
const (
	AuthNone AuthMethod = iota
	AuthPAP
	AuthCHAPMD5
	AuthMSCHAPv2
	// AuthEAP is EAP (LCP Auth-Protocol C227) before the method inside is
	// known; AuthUp reports AuthEAPMD5 or AuthEAPMSCHAPv2 once it is.
	AuthEAP
	AuthEAPMD5      // EAP MD5-Challenge (RFC 3748 §5.4)
	AuthEAPMSCHAPv2 // EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2-02)
)

func (m AuthMethod) String() string {
	switch m {
	case AuthNone:
		return "none"
	case AuthPAP:
		return "PAP"
	case AuthCHAPMD5:
		return "CHAP-MD5"
	case AuthMSCHAPv2:
		return "MS-CHAPv2"
	case AuthEAP:
		return "EAP"
	case AuthEAPMD5:
		return "EAP-MD5"
	case AuthEAPMSCHAPv2:
		return "EAP-MSCHAPv2"
	}
	return "unknown"
}

// authOption returns the Auth-Protocol option value (RFC 1661 §6.2).
func (m AuthMethod) authOption() []byte {
	switch m {
	case AuthPAP:
		return []byte{0xc0, 0x23}
	case AuthCHAPMD5:
		return []byte{0xc2, 0x23, chapAlgMD5}
	case AuthMSCHAPv2:
		return []byte{0xc2, 0x23, chapAlgMSCHAPv2}
	case AuthEAP, AuthEAPMD5, AuthEAPMSCHAPv2:
		return []byte{0xc2, 0x27}
	}
	return nil
}

// parseAuthOption maps an Auth-Protocol option value to a method;
// ok is false for anything this package cannot do.
func parseAuthOption(v []byte) (AuthMethod, bool) {
	switch {
	case len(v) == 2 && v[0] == 0xc0 && v[1] == 0x23:
		return AuthPAP, true
	case len(v) == 3 && v[0] == 0xc2 && v[1] == 0x23 && v[2] == chapAlgMD5:
		return AuthCHAPMD5, true
	case len(v) == 3 && v[0] == 0xc2 && v[1] == 0x23 && v[2] == chapAlgMSCHAPv2:
		return AuthMSCHAPv2, true
	case len(v) == 2 && v[0] == 0xc2 && v[1] == 0x27:
		return AuthEAP, true
	}
	return AuthNone, false
}

// Sentinel errors returned (wrapped) by Run.
var (
	ErrAuthFailed   = errors.New("ppp: authentication failed")
	ErrAuthRejected = errors.New("ppp: no acceptable authentication method")
	ErrNoIP         = errors.New("ppp: no IPv4 address assigned")
	ErrTimeout      = errors.New("ppp: peer not responding")
	ErrTerminated   = errors.New("ppp: link terminated by peer")
	ErrMalformed    = errors.New("ppp: malformed frame")
	// ErrPeerUnreachable is a cancellation cause, not a Run result: Run's
	// context cancelled with it (context.WithCancelCause) means the peer
	// can no longer be reached (the IPsec layer found it dead), so Run
	// returns at once, without a Terminate-Request that could not arrive.
	ErrPeerUnreachable = errors.New("ppp: peer unreachable")
)

// Event is something that happened on the link; see Events.
type Event interface{ pppEvent() }

// LinkUp: LCP reached the Opened state.
type LinkUp struct{}

// AuthUp: authentication succeeded. Message is the peer's text (server side:
// empty). User is the authenticated user name (client: our own).
type AuthUp struct {
	Method  AuthMethod
	Message string
	User    string
}

// IPUp: IPCP reached the Opened state. PeerMRU is the largest PPP
// information field we may send (the peer's MRU, default 1500).
type IPUp struct {
	Local, Peer netip.Addr
	DNS         []netip.Addr
	PeerMRU     uint16
}

func (LinkUp) pppEvent() {}
func (AuthUp) pppEvent() {}
func (IPUp) pppEvent()   {}

// printable makes peer-supplied text safe for errors and logs: non-printable
// bytes become '?', and it is capped at 200 bytes.
func printable(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	var sb strings.Builder
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		sb.WriteByte(c)
	}
	return sb.String()
}
