package netstack

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// IPv6 inside the tunnel. The stack always has gVisor's IPv6 protocol, but
// its endpoint on the NIC stays disabled (no packet in or out, no Router
// Solicitation) until EnableIPv6, which the tunnel calls when IPv6CP
// (RFC 5072) opens. Then the link-local address is fe80::<IID> (RFC 5072
// §5), and Router Advertisements from the server are handled by gVisor's
// NDP (RFC 4861): a prefix with the autonomous flag gives a global address
// by SLAAC (RFC 4862), with an RFC 7217 opaque identifier since a PPP link
// has no MAC address to build one from (RFC 8064 recommends them anyway),
// and the advertising router becomes the default route.

// ipv6Protocol is gVisor's IPv6 with the NDP behaviour of a host on a
// point-to-point link.
func (s *Stack) ipv6Protocol() stack.NetworkProtocolFactory {
	var secret [header.OpaqueIIDSecretKeyMinBytes]byte
	_, _ = rand.Read(secret[:])
	return ipv6.NewProtocolWithOptions(ipv6.Options{
		NDPConfigs: ipv6.NDPConfigurations{
			MaxRtrSolicitations:     3,
			RtrSolicitationInterval: 4 * time.Second,        // RFC 4861 §10 RTR_SOLICITATION_INTERVAL
			MaxRtrSolicitationDelay: 500 * time.Millisecond, // below RFC 4861's 1 s: the only router is the server
			HandleRAs:               ipv6.HandlingRAsAlwaysEnabled,
			DiscoverDefaultRouters:  true,
			DiscoverOnLinkPrefixes:  true,
			AutoGenGlobalAddresses:  true,
		},
		// No DAD: the IPv6CP negotiation made the identifiers unique on
		// this link (RFC 5072 §5), and a PPP peer has no other neighbours.
		DADConfigs:    stack.DADConfigurations{DupAddrDetectTransmits: 0, RetransmitTimer: time.Second},
		OpaqueIIDOpts: ipv6.OpaqueInterfaceIdentifierOptions{NICNameFromID: func(tcpip.NICID, string) string { return "ppp0" }, SecretKey: secret[:]},
		NDPDisp:       ndpDispatcher{s},
		MLD:           ipv6.MLDOptions{Enabled: false},
	})
}

// disableIPv6 keeps the IPv6 endpoint quiet until EnableIPv6.
func (s *Stack) disableIPv6() {
	if ep, err := s.stack.GetNetworkEndpoint(nicID, ipv6.ProtocolNumber); err == nil {
		ep.Disable()
	}
}

// EnableIPv6 brings IPv6 up on the link with the link-local address
// fe80::<iid> (the Interface-Identifier IPv6CP negotiated) and the
// addresses in static (a test server's own global address: it gets a route
// for its prefix and a default route). Router Advertisements are handled
// from now on. Calling it again with the same iid does nothing.
func (s *Stack) EnableIPv6(iid [8]byte, static ...netip.Prefix) error {
	if s.closed() {
		return ErrClosed
	}
	if s.cfg.TCPGSO {
		// gso.go cuts IPv4/TCP segments only.
		return fmt.Errorf("%w: IPv6 with TCPGSO is not supported", ErrBadConfig)
	}
	s.v6mu.Lock()
	defer s.v6mu.Unlock()
	if s.v6iid == iid && s.v6on.Load() {
		return nil
	}
	var ll [16]byte
	ll[0], ll[1] = 0xfe, 0x80
	copy(ll[8:], iid[:])
	addrs := []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16(ll), 64)}
	for _, p := range static {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			return fmt.Errorf("%w: %v is not an IPv6 prefix", ErrBadConfig, p)
		}
		addrs = append(addrs, p)
	}
	for _, p := range addrs {
		pa := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom16(p.Addr().As16()), PrefixLen: p.Bits()}}
		if terr := s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			if _, dup := terr.(*tcpip.ErrDuplicateAddress); !dup {
				return fmt.Errorf("%w: add address %v: %s", ErrBadConfig, p, terr)
			}
		}
		s.stack.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	if len(static) > 0 {
		s.stack.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	ep, terr := s.stack.GetNetworkEndpoint(nicID, ipv6.ProtocolNumber)
	if terr != nil {
		return fmt.Errorf("%w: IPv6 endpoint: %s", ErrBadConfig, terr)
	}
	if terr := ep.Enable(); terr != nil {
		return fmt.Errorf("%w: enable IPv6: %s", ErrBadConfig, terr)
	}
	s.v6iid = iid
	s.v6on.Store(true)
	s.logger.Debug("netstack: IPv6 enabled", "link_local", addrs[0].Addr())
	return nil
}

// DisableIPv6 takes IPv6 down again (IPv6CP closed after it had opened):
// the endpoint stops (gVisor then drops what SLAAC and the Router
// Advertisements installed), the link-local and static addresses and their
// routes go, and IPv6 destinations are no longer dialled. EnableIPv6 may
// bring it up again.
func (s *Stack) DisableIPv6() {
	s.v6mu.Lock()
	defer s.v6mu.Unlock()
	if !s.v6on.Swap(false) {
		return
	}
	s.disableIPv6()
	for _, p := range s.IPv6Addrs() {
		s.stack.RemoveAddress(nicID, tcpip.AddrFrom16(p.Addr().As16()))
	}
	s.stack.RemoveRoutes(func(r tcpip.Route) bool { return r.Destination.ID().BitLen() == 128 })
	s.logger.Debug("netstack: IPv6 disabled")
}

// IPv6Addrs returns the stack's IPv6 addresses (link-local first as
// added, then any from SLAAC).
func (s *Stack) IPv6Addrs() []netip.Prefix {
	var out []netip.Prefix
	for _, pa := range s.stack.AllAddresses()[nicID] {
		if pa.Protocol != ipv6.ProtocolNumber {
			continue
		}
		a, _ := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
		out = append(out, netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen))
	}
	return out
}

// hasGlobalIPv6 reports whether IPv6 is up with an address beyond the
// link-local one, i.e. IPv6 destinations are reachable: only then are
// AAAA records asked for and IPv6 addresses dialled.
func (s *Stack) hasGlobalIPv6() bool {
	if !s.v6on.Load() {
		return false
	}
	for _, p := range s.IPv6Addrs() {
		if !p.Addr().IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// ndpDispatcher installs what Router Advertisements announce: gVisor's
// NDP discovers routers and prefixes but leaves the route table to the
// integrator.
type ndpDispatcher struct{ s *Stack }

func (d ndpDispatcher) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, stack.DADResult) {
}

func (d ndpDispatcher) OnOffLinkRouteUpdated(nic tcpip.NICID, dst tcpip.Subnet, router tcpip.Address, _ header.NDPRoutePreference) {
	d.s.logger.Debug("netstack: IPv6 route from Router Advertisement", "dst", dst, "router", router)
	d.s.stack.AddRoute(tcpip.Route{Destination: dst, Gateway: router, NIC: nic})
}

func (d ndpDispatcher) OnOffLinkRouteInvalidated(nic tcpip.NICID, dst tcpip.Subnet, router tcpip.Address) {
	d.s.stack.RemoveRoutes(func(r tcpip.Route) bool {
		return r.Destination == dst && r.Gateway == router && r.NIC == nic
	})
}

func (d ndpDispatcher) OnOnLinkPrefixDiscovered(nic tcpip.NICID, p tcpip.Subnet) {
	d.s.stack.AddRoute(tcpip.Route{Destination: p, NIC: nic})
}

func (d ndpDispatcher) OnOnLinkPrefixInvalidated(nic tcpip.NICID, p tcpip.Subnet) {
	d.s.stack.RemoveRoutes(func(r tcpip.Route) bool {
		return r.Destination == p && r.Gateway == (tcpip.Address{}) && r.NIC == nic
	})
}

func (d ndpDispatcher) OnAutoGenAddress(_ tcpip.NICID, a tcpip.AddressWithPrefix) stack.AddressDispatcher {
	d.s.logger.Info("IPv6 address from Router Advertisement (SLAAC)", "address", a.String())
	return nil
}

func (d ndpDispatcher) OnAutoGenAddressDeprecated(tcpip.NICID, tcpip.AddressWithPrefix) {}

func (d ndpDispatcher) OnAutoGenAddressInvalidated(_ tcpip.NICID, a tcpip.AddressWithPrefix) {
	d.s.logger.Info("IPv6 address expired", "address", a.String())
}

func (d ndpDispatcher) OnRecursiveDNSServerOption(tcpip.NICID, []tcpip.Address, time.Duration) {}

func (d ndpDispatcher) OnDNSSearchListOption(tcpip.NICID, []string, time.Duration) {}

func (d ndpDispatcher) OnDHCPv6Configuration(tcpip.NICID, ipv6.DHCPv6ConfigurationFromNDPRA) {}
