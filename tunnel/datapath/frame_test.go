package datapath

import (
	"encoding/binary"
	"testing"

	"github.com/l2tpproxy/l2tpproxy/tunnel/l2tp"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

// frameIP gives IPv4 packets PPP protocol 0x0021 and IPv6 packets 0x0057
// (RFC 1332 §2, RFC 5072 §3), by the packet's version nibble.
func TestFrameIPProtocol(t *testing.T) {
	p := &Path{}
	s := &l2tp.Session{PeerTunnelID: 7, PeerSessionID: 9}
	for _, tc := range []struct {
		first byte
		want  uint16
	}{{0x45, ppp.ProtoIPv4}, {0x60, ppp.ProtoIPv6}} {
		buf := make([]byte, Headroom+40)
		buf[Headroom] = tc.first
		start := p.frameIP(buf, Headroom, s)
		if got := binary.BigEndian.Uint16(buf[Headroom-2:]); got != tc.want {
			t.Errorf("first byte %#x: protocol %#04x, want %#04x", tc.first, got, tc.want)
		}
		if buf[Headroom-4] != 0xff || buf[Headroom-3] != 0x03 || start >= Headroom {
			t.Errorf("first byte %#x: bad PPP header % x", tc.first, buf[start:Headroom])
		}
	}
}
