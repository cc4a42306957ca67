package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Via is where a destination's connections go.
type Via int

const (
	ViaTunnel Via = iota // through the VPN
	ViaDirect            // dialled from the host, outside the VPN
	ViaRefuse            // refused by the proxy
)

func (v Via) String() string {
	switch v {
	case ViaTunnel:
		return "tunnel"
	case ViaDirect:
		return "direct"
	case ViaRefuse:
		return "refuse"
	}
	return fmt.Sprintf("Via(%d)", int(v))
}

// ErrRefusedByRoutes is returned for destinations outside the routes and
// domains when the others are refused (--others refuse).
var ErrRefusedByRoutes = errors.New("proxy: destination is outside the VPN's routes and domains, and others are refused")

// ErrBadRoute marks an unusable --route, --domain or --others value.
var ErrBadRoute = errors.New("bad route")

// Routes says which destinations go through the VPN: the addresses in
// Nets and the names equal to or under Domains. With neither, everything
// goes through the VPN. Otherwise everything else goes Others (direct or
// refused).
//
// Names are decided by name first (a name under a domain goes through the
// VPN and is resolved there, by the VPN's DNS). A name under no domain is
// resolved by the host's resolver and decided by its first IPv4 address,
// the same rule the PAC file gives browsers (isInNet(dnsResolve(host))):
// the VPN's DNS never sees names outside the domains.
type Routes struct {
	Nets    []netip.Prefix
	Domains []string // lower case, no leading or trailing dot
	Others  Via      // ViaDirect or ViaRefuse
}

// ParseRoutes builds Routes from --route CIDRs, --domain suffixes and the
// --others policy ("direct", "refuse"; empty means direct).
func ParseRoutes(nets, domains []string, others string) (*Routes, error) {
	r := &Routes{Others: ViaDirect}
	switch others {
	case "", "direct":
	case "refuse":
		r.Others = ViaRefuse
	default:
		return nil, fmt.Errorf("%w: --others must be direct or refuse, not %q", ErrBadRoute, others)
	}
	for _, s := range nets {
		p, err := parseRoute(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		r.Nets = append(r.Nets, p)
	}
	for _, s := range domains {
		d, err := parseDomain(s)
		if err != nil {
			return nil, err
		}
		r.Domains = append(r.Domains, d)
	}
	return r, nil
}

func parseRoute(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		// A bare address is a /32.
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("%w: --route %q is not a CIDR (like 10.0.0.0/8)", ErrBadRoute, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: --route %q: the VPN carries IPv4 only", ErrBadRoute, s)
	}
	return p.Masked(), nil
}

// parseDomain normalises a --domain suffix: lower case, without leading or
// trailing dots, made of DNS labels (letters, digits, '-', '_').
func parseDomain(s string) (string, error) {
	d := strings.ToLower(strings.Trim(strings.TrimSpace(s), "."))
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w: --domain %q is not a domain name", ErrBadRoute, s)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%w: --domain %q is not a domain name", ErrBadRoute, s)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%w: --domain %q is not a domain name", ErrBadRoute, s)
			}
		}
	}
	return d, nil
}

// All reports whether everything goes through the VPN (no rules given).
func (r *Routes) All() bool { return r == nil || len(r.Nets) == 0 && len(r.Domains) == 0 }

// InDomains reports whether host (a name) is equal to or under a domain.
func (r *Routes) InDomains(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range r.Domains {
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}

// ByAddr decides for an address.
func (r *Routes) ByAddr(a netip.Addr) Via {
	if r.All() {
		return ViaTunnel
	}
	a = a.Unmap()
	for _, p := range r.Nets {
		if p.Contains(a) {
			return ViaTunnel
		}
	}
	return r.Others
}

// HostResolver resolves names outside the VPN (net.DefaultResolver).
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Router is a Dialer that sends each connection where Routes says: through
// Tunnel, directly from the host with Direct, or nowhere.
type Router struct {
	Routes *Routes
	Tunnel Dialer
	Direct Dialer       // nil: a net.Dialer
	Host   HostResolver // nil: net.DefaultResolver
}

// Decide returns where connections to host (a name or an address) go, and
// the host to dial there: host itself, or the address a name was decided
// by (so the connection goes where the decision was made).
func (rt *Router) Decide(ctx context.Context, host string) (Via, string, error) {
	r := rt.Routes
	if r.All() {
		return ViaTunnel, host, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return r.ByAddr(a), host, nil
	}
	if r.InDomains(host) {
		return ViaTunnel, host, nil
	}
	if len(r.Nets) == 0 {
		return r.Others, host, nil
	}
	hr := rt.Host
	if hr == nil {
		hr = net.DefaultResolver
	}
	addrs, err := hr.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		// Not resolvable from the host: not in a route as far as we can
		// tell (a direct dial fails the same way).
		return r.Others, host, nil
	}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			return r.ByAddr(a), a.String(), nil
		}
	}
	return r.Others, host, nil
}

// DialContext dials network ("tcp" or "udp") address ("host:port").
func (rt *Router) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	via, dialHost, err := rt.Decide(ctx, host)
	if err != nil {
		return nil, err
	}
	switch via {
	case ViaTunnel:
		return rt.Tunnel.DialContext(ctx, network, net.JoinHostPort(dialHost, port))
	case ViaDirect:
		d := rt.Direct
		if d == nil {
			d = &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
		}
		return d.DialContext(ctx, network, net.JoinHostPort(dialHost, port))
	}
	return nil, fmt.Errorf("%w: %s", ErrRefusedByRoutes, host)
}
