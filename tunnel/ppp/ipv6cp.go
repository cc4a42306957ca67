package ppp

import (
	"bytes"
	"encoding/binary"
	"io"
)

// IPv6CP (RFC 5072). The only option is Interface-Identifier (type 1,
// length 10, §4.1): each end negotiates the 64-bit identifier of its
// link-local address fe80::<IID>. IPv6CP is optional for this package: a
// peer that Protocol-Rejects it (most L2TP servers) or never answers leaves
// the link IPv4-only, and IPCP alone decides when the network layer is up.

// IPv6CP option types (RFC 5072 §4).
const (
	ipv6cpOptIID  = 1
	ipv6cpOptComp = 2 // IPv6-Compression-Protocol: always rejected
)

// IIDLen is the length of an Interface-Identifier.
const IIDLen = 8

// IPv6Up: IPv6CP reached the Opened state. Local and Peer are the
// negotiated Interface-Identifiers (link-local fe80::Local and fe80::Peer).
type IPv6Up struct {
	Local, Peer [IIDLen]byte
}

func (IPv6Up) pppEvent() {}

// IPv6Down: an opened IPv6CP left the Opened state (the peer closed it with
// a Terminate-Request, Protocol-Rejected it or restarted its negotiation):
// IPv6 is no longer usable on the link until the next IPv6Up.
type IPv6Down struct{}

func (IPv6Down) pppEvent() {}

// ipv6State is what both roles keep for IPv6CP.
type ipv6State struct {
	iid         [IIDLen]byte // ours (non-zero unless we had no randomness)
	peerIID     [IIDLen]byte // the peer's, from the request we acked
	iidRejected bool         // the peer rejected our Interface-Identifier option
}

// randomIID returns a random non-zero identifier different from avoid
// (RFC 5072 §4.1: zero means "none"; equal identifiers must be resolved).
func randomIID(r io.Reader, avoid [IIDLen]byte) ([IIDLen]byte, bool) {
	var id [IIDLen]byte
	for range 8 {
		if _, err := io.ReadFull(r, id[:]); err != nil {
			return [IIDLen]byte{}, false
		}
		if id != ([IIDLen]byte{}) && id != avoid {
			return id, true
		}
	}
	return [IIDLen]byte{}, false
}

// parseIIDOption returns the Interface-Identifier of an option value, ok
// false if it is not 8 bytes.
func parseIIDOption(val []byte) ([IIDLen]byte, bool) {
	if len(val) != IIDLen {
		return [IIDLen]byte{}, false
	}
	return [IIDLen]byte(val), true
}

// ipv6Handler is the IPv6CP option semantics, the same for both roles
// (RFC 5072 is symmetric).
type ipv6Handler struct {
	l  *link
	st *ipv6State
	// onUp is called when IPv6CP opens.
	onUp func(IPv6Up)
}

func (h ipv6Handler) appendRequest(b []byte) []byte {
	if h.st.iidRejected {
		return b
	}
	b = append(b, ipv6cpOptIID, 2+IIDLen)
	return append(b, h.st.iid[:]...)
}

// checkRequest applies RFC 5072 §4.1 to the peer's Interface-Identifier: a
// zero identifier, or one equal to ours, is Naked with a random identifier
// that differs from ours; anything else is acked. Compression and unknown
// options are rejected.
func (h ipv6Handler) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	for rest := opts; len(rest) > 0; {
		typ, val, raw, r, _ := nextOption(rest)
		rest = r
		if typ != ipv6cpOptIID {
			rej = append(rej, raw...)
			continue
		}
		id, ok := parseIIDOption(val)
		if !ok {
			rej = append(rej, raw...)
			continue
		}
		if id == ([IIDLen]byte{}) || id == h.st.iid {
			sug, ok := randomIID(h.l.rnd, h.st.iid)
			if !ok {
				rej = append(rej, raw...)
				continue
			}
			nak = append(nak, ipv6cpOptIID, 2+IIDLen)
			nak = append(nak, sug[:]...)
		}
	}
	return nak, rej, nil
}

func (h ipv6Handler) peerAcked(opts []byte) {
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if id, ok := parseIIDOption(val); ok && typ == ipv6cpOptIID {
			h.st.peerIID = id
		}
	}
}

// gotNak takes the identifier the peer suggests for us if it is non-zero
// and differs from the peer's own (RFC 5072 §4.1); otherwise it picks a new
// random one.
func (h ipv6Handler) gotNak(opts []byte) error {
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		id, ok := parseIIDOption(val)
		if typ != ipv6cpOptIID || !ok {
			continue
		}
		if id != ([IIDLen]byte{}) && id != h.st.peerIID {
			h.st.iid = id
		} else if n, ok := randomIID(h.l.rnd, h.st.peerIID); ok {
			h.st.iid = n
		}
	}
	return nil
}

func (h ipv6Handler) gotReject(opts []byte) error {
	for rest := opts; len(rest) > 0; {
		typ, _, _, r, _ := nextOption(rest)
		rest = r
		if typ == ipv6cpOptIID {
			h.st.iidRejected = true // keep our own identifier, unannounced
		}
	}
	return nil
}

func (h ipv6Handler) up() error {
	ev := IPv6Up{Local: h.st.iid, Peer: h.st.peerIID}
	if ev.Peer == ([IIDLen]byte{}) || ev.Peer == ev.Local {
		// The peer sent no identifier: give it one that differs from
		// ours so the two link-local addresses differ.
		ev.Peer = ev.Local
		ev.Peer[IIDLen-1] ^= 1
	}
	h.l.log.Debug("ppp: IPv6CP up", "local", fmtIID(ev.Local), "peer", fmtIID(ev.Peer))
	h.onUp(ev)
	return nil
}

func fmtIID(id [IIDLen]byte) string {
	var b bytes.Buffer
	for i := 0; i < IIDLen; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex4(binary.BigEndian.Uint16(id[i:])))
	}
	return b.String()
}

func hex4(v uint16) string {
	const d = "0123456789abcdef"
	return string([]byte{d[v>>12], d[v>>8&15], d[v>>4&15], d[v&15]})
}

// suggestingIPv6 is the test server's IPv6CP when it assigns the client's
// Interface-Identifier: the client's first request is Naked with iid.
type suggestingIPv6 struct {
	ipv6Handler
	iid  [IIDLen]byte
	left *int
}

func (h suggestingIPv6) checkRequest(opts, nak, rej []byte) ([]byte, []byte, error) {
	nak, rej, err := h.ipv6Handler.checkRequest(opts, nak, rej)
	if err != nil || len(nak) > 0 || len(rej) > 0 || *h.left == 0 {
		return nak, rej, err
	}
	for rest := opts; len(rest) > 0; {
		typ, val, _, r, _ := nextOption(rest)
		rest = r
		if id, ok := parseIIDOption(val); ok && typ == ipv6cpOptIID && id != h.iid {
			*h.left--
			nak = append(nak, ipv6cpOptIID, 2+IIDLen)
			nak = append(nak, h.iid[:]...)
		}
	}
	return nak, rej, nil
}
