package netstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

func (s *Stack) closed() bool {
	select {
	case <-s.link.done:
		return true
	default:
		return false
	}
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if a := ap.Addr().Unmap(); a.Is4() && !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFrom4(a.As4())
	} else if a.Is6() && !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFrom16(a.As16())
	}
	return fa
}

// netProto is the network protocol of an address (IPv4 for the
// unspecified and invalid address, as before IPv6).
func netProto(ap netip.AddrPort) tcpip.NetworkProtocolNumber {
	if a := ap.Addr().Unmap(); a.Is6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// DialContext connects to address over network ("tcp", "tcp4", "tcp6",
// "udp", "udp4" or "udp6") through the stack. Host names are resolved with
// LookupHost (i.e. through the tunnel's DNS servers, never the host's
// resolver); each address is tried in turn, IPv4 first, until one connects
// or ctx expires. IPv6 addresses are used only once IPv6 is up with a
// global address (IPv6CP opened and a Router Advertisement gave a prefix).
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	var isTCP bool
	want4, want6 := true, true
	switch network {
	case "tcp", "tcp4", "tcp6":
		isTCP = true
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedNetwork, network)
	}
	switch network[len(network)-1] {
	case '4':
		want6 = false
	case '6':
		want4 = false
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadAddress, address, err)
	}
	port, err := parsePort(network, portStr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadAddress, address, err)
	}
	addrs, err := s.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	v6 := want6 && s.hasGlobalIPv6()
	ordered := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && want4 {
			ordered = append(ordered, a)
		}
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is6() && v6 {
			ordered = append(ordered, a)
		}
	}
	var lastErr error
	tried := 0
	for _, a := range ordered {
		tried++
		var c net.Conn
		if isTCP {
			c, err = s.dialTCP(ctx, netip.AddrPortFrom(a, port))
		} else {
			c, err = s.dialUDP(netip.AddrPortFrom(a, port))
		}
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if tried == 0 {
		if !v6 {
			return nil, fmt.Errorf("%w: %s: no IPv4 address (IPv6 is not up in the tunnel)", ErrDial, host)
		}
		return nil, fmt.Errorf("%w: %s: no address for %s", ErrDial, host, network)
	}
	return nil, lastErr
}

func parsePort(network, s string) (uint16, error) {
	if p, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint16(p), nil
	}
	// Service names come from /etc/services (never DNS).
	p, err := net.LookupPort(network, s)
	if err != nil {
		return 0, err
	}
	return uint16(p), nil
}

func (s *Stack) dialTCP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	c, err := s.dialTCPConn(ctx, fullAddr(ap))
	if err != nil {
		// gonet reports gVisor errors as text ("connection was refused",
		// "no route to host", ...); keep the text, which the SOCKS server
		// maps to reply codes.
		return nil, fmt.Errorf("%w: tcp %v: %w", ErrDial, ap, err)
	}
	return c, nil
}

func (s *Stack) dialUDP(ap netip.AddrPort) (net.Conn, error) {
	raddr := fullAddr(ap)
	c, err := gonet.DialUDP(s.stack, nil, &raddr, netProto(ap))
	if err != nil {
		return nil, fmt.Errorf("%w: udp %v: %w", ErrDial, ap, err)
	}
	return c, nil
}

// ListenTCP listens for TCP connections on addr (an unspecified address
// means every local address, i.e. LocalAddr).
func (s *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	if err := checkListenAddr(addr); err != nil {
		return nil, err
	}
	l, err := gonet.ListenTCP(s.stack, fullAddr(addr), netProto(addr))
	if err != nil {
		return nil, fmt.Errorf("%w: tcp %v: %w", ErrListen, addr, err)
	}
	return l, nil
}

// ListenUDP opens a UDP socket bound to addr.
func (s *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	if err := checkListenAddr(addr); err != nil {
		return nil, err
	}
	laddr := fullAddr(addr)
	c, err := gonet.DialUDP(s.stack, &laddr, nil, netProto(addr))
	if err != nil {
		return nil, fmt.Errorf("%w: udp %v: %w", ErrListen, addr, err)
	}
	return c, nil
}

func checkListenAddr(addr netip.AddrPort) error {
	a := addr.Addr()
	if a.Is6() && !a.Is4In6() && a.Zone() != "" {
		return fmt.Errorf("%w: %v: zones are not supported", ErrBadAddress, addr)
	}
	return nil
}
