package testserver

import (
	"context"
	"net/netip"

	"github.com/l2tpproxy/l2tpproxy/netstack"
	"github.com/l2tpproxy/l2tpproxy/tunnel/datapath"
	"github.com/l2tpproxy/l2tpproxy/tunnel/ppp"
)

// IPv6 on the far side (Config.IPv6): the PPP server answers IPv6CP, the
// far-side stack gets ServerIP6 in Prefix6, and the server acts as the
// link's router the way pppd + radvd do: a Router Advertisement for Prefix6
// when IPv6CP opens and in answer to every Router Solicitation, so the
// client gets its global address by SLAAC, as from a real server.
var (
	Prefix6     = netip.MustParsePrefix("2001:db8:77::/64")
	ServerIP6   = netip.MustParseAddr("2001:db8:77::1") // HTTP, DNS (also over IPv4) on IPv6
	Target6Name = "target6.vpn.test"                    // AAAA only
)

// raSink passes inbound packets to the far-side stack and answers Router
// Solicitations with a Router Advertisement.
type raSink struct {
	s    *Server
	next *netstack.Stack
}

func (r raSink) InjectInbound(pkt []byte) error {
	r.check(pkt)
	return r.next.InjectInbound(pkt)
}

func (r raSink) EnqueueInbound(pkt []byte) error {
	r.check(pkt)
	return r.next.EnqueueInbound(pkt)
}

func (r raSink) FlushInbound() { r.next.FlushInbound() }

func (r raSink) check(pkt []byte) {
	if netstack.IsRouterSolicitation(pkt) {
		r.s.sendRA()
	}
}

// ipv6Up configures the far side when IPv6CP has opened.
func (s *Server) ipv6Up(ev ppp.IPv6Up) {
	if err := s.stack.EnableIPv6(ev.Local, netip.PrefixFrom(ServerIP6, Prefix6.Bits())); err != nil {
		s.log.Warn("far-side IPv6", "err", err)
		return
	}
	var ll [16]byte
	ll[0], ll[1] = 0xfe, 0x80
	copy(ll[8:], ev.Local[:])
	s.routerLL.Store(netip.AddrFrom16(ll))
	s.http6.Do(func() {
		if err := s.startServices6(s.ctx); err != nil {
			s.log.Warn("far-side IPv6 HTTP", "err", err)
		}
	})
	s.sendRA()
}

// sendRA sends one Router Advertisement, if IPv6 is up.
func (s *Server) sendRA() {
	router, ok := s.routerLL.Load().(netip.Addr)
	if !ok {
		return
	}
	ra, err := netstack.RouterAdvertisement(router, Prefix6)
	if err != nil {
		s.log.Warn("router advertisement", "err", err)
		return
	}
	buf := make([]byte, datapath.Headroom+len(ra), datapath.Headroom+len(ra)+datapath.Tailroom)
	copy(buf[datapath.Headroom:], ra)
	if err := s.data.SendIP(buf, datapath.Headroom); err != nil {
		s.log.Debug("send router advertisement", "err", err)
	}
}

// startServices6 serves HTTP on [ServerIP6]:80 (DNS stays on ServerIP,
// and answers AAAA).
func (s *Server) startServices6(ctx context.Context) error {
	return s.serveHTTP(ctx, netip.AddrPortFrom(ServerIP6, HTTPPort))
}

// CloseIPv6CP sends the client an IPv6CP Terminate-Request (RFC 1661 §5.5),
// as a server does that takes IPv6 down while IPv4 stays: the client must
// stop using IPv6. The server's own side keeps its IPv6 configuration.
func (s *Server) CloseIPv6CP() error {
	// protocol 0x8057, code 5 Terminate-Request, identifier, length 4.
	return s.data.SendPPP([]byte{0x80, 0x57, 5, 0xe1, 0, 4})
}
