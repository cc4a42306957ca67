package netstack

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// RouterAdvertisement builds the IPv6 packet a router on a PPP link sends
// (RFC 4861 §4.2, as radvd does after IPv6CP): from the link-local router
// address to all nodes (ff02::1), hop limit 255, router lifetime 30 min,
// and one Prefix Information option (§4.6.2) for prefix with the on-link
// and autonomous flags, so a host makes a SLAAC address in it (RFC 4862
// §5.5.3) and takes the router as its default. The test server sends it.
func RouterAdvertisement(router netip.Addr, prefix netip.Prefix) ([]byte, error) {
	if !router.Is6() || !router.IsLinkLocalUnicast() || !prefix.Addr().Is6() || prefix.Bits() != 64 {
		return nil, fmt.Errorf("%w: router %v prefix %v", ErrBadConfig, router, prefix)
	}
	const raLen = header.ICMPv6HeaderSize + header.NDPRAMinimumSize + 32
	p := make([]byte, header.IPv6MinimumSize+raLen)
	ip := p[:header.IPv6MinimumSize]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], raLen)
	ip[6] = uint8(header.ICMPv6ProtocolNumber)
	ip[7] = 255 // RFC 4861 §6.1.2: hosts drop RAs with any other hop limit
	src, dst := router.As16(), header.IPv6AllNodesMulticastAddress.As16()
	copy(ip[8:], src[:])
	copy(ip[24:], dst[:])

	m := p[header.IPv6MinimumSize:]
	m[0] = uint8(header.ICMPv6RouterAdvert)
	m[4] = 64                               // Cur Hop Limit
	binary.BigEndian.PutUint16(m[6:], 1800) // Router Lifetime (s)
	o := m[header.ICMPv6HeaderSize+header.NDPRAMinimumSize:]
	o[0], o[1] = 3, 4 // Prefix Information, 4 x 8 bytes
	o[2] = 64
	o[3] = 0xc0                              // L (on-link) and A (autonomous)
	binary.BigEndian.PutUint32(o[4:], 86400) // valid lifetime
	binary.BigEndian.PutUint32(o[8:], 14400) // preferred lifetime
	pa := prefix.Masked().Addr().As16()
	copy(o[16:], pa[:])

	sum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpip.AddrFrom16(src), tcpip.AddrFrom16(dst), raLen)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, sum))
	return p, nil
}

// IsRouterSolicitation reports whether pkt is an ICMPv6 Router
// Solicitation (RFC 4861 §4.1) without extension headers.
func IsRouterSolicitation(pkt []byte) bool {
	return len(pkt) >= header.IPv6MinimumSize+header.ICMPv6HeaderSize && pkt[0]>>4 == 6 &&
		pkt[6] == uint8(header.ICMPv6ProtocolNumber) && pkt[header.IPv6MinimumSize] == uint8(header.ICMPv6RouterSolicit)
}
