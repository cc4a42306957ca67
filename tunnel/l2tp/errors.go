package l2tp

import "errors"

// Sentinel errors, one per failure class. Errors returned by this package wrap
// one of them (test with errors.Is).
var (
	// ErrTimeout: a control message was not acknowledged after
	// Config.MaxRetries retransmissions, or the peer went silent during
	// establishment (RFC 2661 §5.8).
	ErrTimeout = errors.New("l2tp: peer not responding")
	// ErrTunnelClosed: the peer cleared the control connection with StopCCN
	// (RFC 2661 §5.7). The wrapped text carries the peer's Result Code.
	ErrTunnelClosed = errors.New("l2tp: tunnel closed by peer")
	// ErrSessionClosed: the peer cleared the session with CDN (RFC 2661 §5.6).
	ErrSessionClosed = errors.New("l2tp: session closed by peer")
	// ErrMalformed: a packet or AVP violates the wire format (RFC 2661 §3, §4).
	ErrMalformed = errors.New("l2tp: malformed packet")
	// ErrProtocol: a well-formed message that breaks the protocol: missing
	// required AVP, unknown mandatory AVP, bad IDs, unsupported version.
	ErrProtocol = errors.New("l2tp: protocol error")
	// ErrTunnelAuthUnsupported: the peer used tunnel authentication (Challenge
	// AVP, RFC 2661 §5.1.1) or hidden AVPs (§4.3). We have no tunnel secret.
	// Errors of this class also wrap ErrProtocol.
	ErrTunnelAuthUnsupported = errors.New("l2tp: tunnel authentication is not supported (no tunnel secret configured)")
	// ErrPeerUnreachable is a cancellation cause, not a Run result: Run's
	// context cancelled with it (context.WithCancelCause) means the peer
	// can no longer be reached (the IPsec layer found it dead), so Run
	// returns at once, without a CDN/StopCCN that could not arrive.
	ErrPeerUnreachable = errors.New("l2tp: peer unreachable")
)

// Pre-built errors for the allocation-free data path.
var (
	errDataShort    = wrapConst("data message shorter than its header")
	errDataControl  = wrapConst("not a data message (T bit set)")
	errDataVersion  = wrapConst("not L2TPv2 (version field != 2)")
	errDataLength   = wrapConst("data message Length field out of range")
	errDataOffset   = wrapConst("data message offset beyond end of packet")
	errHdrShort     = wrapConst("control message shorter than 12-byte header")
	errHdrFlags     = wrapConst("control message without T, L and S bits or with O bit (RFC 2661 §3.1)")
	errHdrLength    = wrapConst("control message Length field out of range")
	errAVPShort     = wrapConst("truncated AVP header")
	errAVPLength    = wrapConst("AVP length out of range (RFC 2661 §4.1)")
	errAVPFirst     = wrapConst("first AVP is not a 2-byte Message Type (RFC 2661 §4.1)")
	errAVPTooLong   = wrapConst("AVP value too long to encode")
	errBufferTooBig = wrapConst("control message longer than 65535 bytes")
)

type constError struct{ msg string }

func (e *constError) Error() string { return "l2tp: malformed packet: " + e.msg }
func (e *constError) Unwrap() error { return ErrMalformed }

func wrapConst(msg string) error { return &constError{msg} }
