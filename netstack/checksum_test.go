package netstack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ipPacket builds an IPv4 packet with a correct header checksum around a
// transport segment whose checksum is computed too (unless zeroUDP).
func ipPacket(proto tcpip.TransportProtocolNumber, payload []byte, flags uint8, zeroUDP bool) []byte {
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	var l4 []byte
	switch proto {
	case header.TCPProtocolNumber:
		l4 = make([]byte, header.TCPMinimumSize+len(payload))
		header.TCP(l4).Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, SeqNum: 3, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 100})
		copy(l4[header.TCPMinimumSize:], payload)
		xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
		header.TCP(l4).SetChecksum(^checksum.Checksum(l4, xsum))
	case header.UDPProtocolNumber:
		l4 = make([]byte, header.UDPMinimumSize+len(payload))
		header.UDP(l4).Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: uint16(len(l4))})
		copy(l4[header.UDPMinimumSize:], payload)
		if !zeroUDP {
			xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
			header.UDP(l4).SetChecksum(^checksum.Checksum(l4, xsum))
		}
	}
	pkt := make([]byte, header.IPv4MinimumSize+len(l4))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: src, DstAddr: dst, Flags: flags})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], l4)
	return pkt
}

func TestChecksumsValid(t *testing.T) {
	data := []byte("some payload bytes, odd length!")
	tcp := ipPacket(header.TCPProtocolNumber, data, 0, false)
	udp := ipPacket(header.UDPProtocolNumber, data, 0, false)
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		return c
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"tcp", tcp, true},
		{"udp", udp, true},
		{"udp without checksum", ipPacket(header.UDPProtocolNumber, data, 0, true), true},
		{"tcp padded after total length", append(append([]byte(nil), tcp...), 0xff, 0xee), true},
		{"tcp payload corrupted", flip(tcp, len(tcp)-3), false},
		{"udp payload corrupted", flip(udp, len(udp)-1), false},
		{"ip header corrupted", flip(tcp, 8), false},
		{"fragment", ipPacket(header.UDPProtocolNumber, data, header.IPv4FlagMoreFragments, false), false},
		{"truncated", tcp[:len(tcp)-1], false},
	} {
		if got := checksumsValid(tc.pkt); got != tc.want {
			t.Errorf("%s: checksumsValid = %v, want %v", tc.name, got, tc.want)
		}
	}
}
