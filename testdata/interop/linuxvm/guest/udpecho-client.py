#!/usr/bin/env python3
"""udpecho-client.py HOST PORT TIMEOUT: send 3 datagrams to a UDP echo service, exit 0 if all came back."""
import os
import socket
import sys

host, port, tmo = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(tmo)
for n in (1, 100, 1200):
    msg = os.urandom(n)
    s.sendto(msg, (host, port))
    try:
        data, _ = s.recvfrom(65535)
    except OSError:
        sys.exit(1)
    if data != msg:
        sys.exit(1)
sys.exit(0)
