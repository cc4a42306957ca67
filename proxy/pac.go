package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// PAC returns a proxy auto-config file (the Netscape PAC format browsers
// read: a JavaScript FindProxyForURL(url, host)) sending what Routes sends
// through the VPN to "PROXY proxyHostPort" and the rest DIRECT (or, with
// others refused, still to the proxy, which refuses it with a clear
// message).
//
// Names under a domain are matched by name with dnsDomainIs before
// anything is resolved, so the browser never asks the host's DNS for an
// intranet name. IP literals are matched with isInNet directly. Other names
// are resolved by the browser (dnsResolve, the host's DNS, which a DIRECT
// connection would use anyway) and matched by address, like Router does.
// With no rules at all, everything goes to the proxy.
func (r *Routes) PAC(proxyHostPort string) string {
	var b strings.Builder
	proxyLine := "PROXY " + proxyHostPort
	b.WriteString("// l2tpproxy: what goes through the VPN.\n")
	b.WriteString("function FindProxyForURL(url, host) {\n")
	fmt.Fprintf(&b, "  var vpn = %s;\n", strconv.Quote(proxyLine))
	if r.All() {
		b.WriteString("  return vpn;\n}\n")
		return b.String()
	}
	others := `"DIRECT"`
	if r.Others == ViaRefuse {
		others = "vpn" // the proxy answers with why it refuses
	}
	b.WriteString("  host = host.toLowerCase();\n")
	b.WriteString("  if (host.charAt(host.length - 1) == \".\") host = host.substring(0, host.length - 1);\n")
	for _, d := range r.Domains {
		fmt.Fprintf(&b, "  if (host == %s || dnsDomainIs(host, %s)) return vpn;\n", strconv.Quote(d), strconv.Quote("."+d))
	}
	if len(r.Nets) > 0 {
		b.WriteString("  var ip = host;\n")
		b.WriteString("  if (!/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {\n")
		b.WriteString("    if (host.indexOf(\":\") >= 0) return " + others + "; // IPv6 literal: not carried by the VPN\n")
		b.WriteString("    ip = dnsResolve(host);\n")
		b.WriteString("    if (!ip) return " + others + ";\n")
		b.WriteString("  }\n")
		for _, p := range r.Nets {
			fmt.Fprintf(&b, "  if (isInNet(ip, %s, %s)) return vpn;\n", strconv.Quote(p.Addr().String()), strconv.Quote(maskString(p)))
		}
	}
	b.WriteString("  return " + others + ";\n}\n")
	return b.String()
}

func maskString(p netip.Prefix) string {
	m := net.CIDRMask(p.Bits(), 32)
	return net.IP(m).String()
}
