#!/usr/bin/env python3
"""Router Advertisements on the PPP links of the L2TP/IPsec test VM (what radvd does after pppd's IPv6CP).

For every pppN interface with IPv6 up (a link-local address from IPv6CP) it adds the route to
PREFIX:N::/64 over that link and advertises that prefix (on-link, autonomous: the client makes its
address by SLAAC) with this router as the default router: every few seconds, and at once in answer
to a Router Solicitation (RFC 4861 §6.2.6). Only the standard library: the guest image has no radvd.
"""
import argparse
import ipaddress
import os
import select
import socket
import struct
import subprocess
import sys
import time

ICMP6_RS, ICMP6_RA = 133, 134


def ppp_links():
    """{ifname: ifindex} of the ppp interfaces that have an IPv6 link-local address."""
    out = {}
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                addr, idx, _plen, scope, _flags, name = line.split()
                if name.startswith("ppp") and scope == "20":  # link-local
                    out[name] = int(idx, 16)
    except OSError:
        pass
    return out


def prefix_of(base, name):
    """base (a /48) + the ppp unit number as the fourth group: one /64 per link."""
    unit = int(name[3:])
    net = ipaddress.IPv6Network(base)
    return ipaddress.IPv6Network((int(net.network_address) | (unit << 64), 64))


def ra(prefix, lifetime):
    # RFC 4861 §4.2: type, code, checksum (the kernel fills it), cur hop limit 64, flags 0,
    # router lifetime, reachable time, retrans timer; then a Prefix Information option (§4.6.2):
    # type 3, length 4, prefix length 64, flags L|A, valid and preferred lifetimes, reserved, prefix.
    hdr = struct.pack("!BBHBBHII", ICMP6_RA, 0, 0, 64, 0, lifetime, 0, 0)
    pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 3600, 1800, 0) + prefix.network_address.packed
    return hdr + pio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", required=True, help="a /48; link pppN gets PREFIX:N::/64")
    ap.add_argument("--interval", type=float, default=3.0)
    a = ap.parse_args()
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861 §6.1.2: hop limit 255
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    known = {}  # ifname -> ifindex with its route installed
    next_ra = 0.0
    while True:
        links = ppp_links()
        for name, idx in links.items():
            if known.get(name) != idx:
                p = prefix_of(a.prefix, name)
                subprocess.run(["ip", "-6", "route", "replace", str(p), "dev", name], check=False)
                try:  # receive Router Solicitations sent to all-routers on this link
                    mreq = socket.inet_pton(socket.AF_INET6, "ff02::2") + struct.pack("@I", idx)
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                except OSError:
                    pass
                print("ra: %s up (ifindex %d): advertising %s" % (name, idx, p), flush=True)
                known[name] = idx
                next_ra = 0.0
        for name in list(known):
            if name not in links:
                del known[name]
        solicited = set()
        r, _, _ = select.select([s], [], [], max(0.0, min(0.5, next_ra - time.monotonic())))
        if r:
            data, src = s.recvfrom(2048)
            if data and data[0] == ICMP6_RS:
                for name, idx in known.items():
                    if idx == src[3]:
                        solicited.add(name)
        now = time.monotonic()
        for name, idx in known.items():
            if now >= next_ra or name in solicited:
                try:
                    s.sendto(ra(prefix_of(a.prefix, name), 1800), ("ff02::1", 0, 0, idx))
                except OSError as e:
                    print("ra: %s: %s" % (name, e), flush=True)
        if now >= next_ra:
            next_ra = now + a.interval


if __name__ == "__main__":
    sys.exit(main())
