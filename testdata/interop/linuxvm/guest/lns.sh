# shellcheck shell=bash
# Sourced by init.sh: xl2tpd LNS + pppd options and secrets for the chosen AUTH variant.
#   mschapv2: pppd require-mschap-v2 (only MS-CHAPv2 offered)
#   chap:     pppd require-chap (CHAP-MD5 only)
#   pap:      pppd require-pap (PAP only)
#   eap:      pppd require-eap (EAP only; pppd's EAP server does MD5-Challenge)
#   hwdsl2:   like hwdsl2/setup-ipsec-vpn: xl2tpd "require chap = yes" + pppd +mschap-v2 (CHAP-MD5 offered first)
mkdir -p /etc/l2tpvm /run/xl2tpd
lns_auth="require authentication = yes"
case "$AUTH" in
mschapv2) ppp_auth="require-mschap-v2"; lns_auth+=$'\nrefuse pap = yes' ;;
chap) ppp_auth="require-chap"; lns_auth+=$'\nrefuse pap = yes' ;;
pap) ppp_auth="require-pap" ;;
eap) ppp_auth="require-eap"; lns_auth+=$'\nrefuse pap = yes\nrefuse chap = yes' ;;
hwdsl2) ppp_auth="+mschap-v2"; lns_auth+=$'\nrequire chap = yes\nrefuse pap = yes' ;;
*) echo "unknown AUTH $AUTH"; false ;;
esac
cat >/etc/l2tpvm/xl2tpd.conf <<CONF
[global]
port = 1701
listen-addr = $SERVER_IP

[lns default]
ip range = $PPP_RANGE
local ip = $PPP_LOCAL
$lns_auth
name = l2tpd
pppoptfile = /etc/l2tpvm/options.xl2tpd
length bit = yes
CONF
cat >/etc/l2tpvm/options.xl2tpd <<CONF
$ppp_auth
ipcp-accept-local
ipcp-accept-remote
noccp
auth
mtu 1280
mru 1280
lcp-echo-failure 4
lcp-echo-interval 30
connect-delay 5000
ms-dns $TARGET_IP
name l2tpd
nodefaultroute
debug
logfile $OUT/pppd-server.log
$([ "${IPV6:-no}" = yes ] && echo "+ipv6")
CONF
printf '"%s" l2tpd "%s" *\n' "$VPN_USER" "$VPN_PASSWORD" >/etc/ppp/chap-secrets
printf '"%s" * "%s" *\n' "$VPN_USER" "$VPN_PASSWORD" >/etc/ppp/pap-secrets
chmod 600 /etc/ppp/chap-secrets /etc/ppp/pap-secrets
xl2tpd -D -c /etc/l2tpvm/xl2tpd.conf -p /run/xl2tpd/server.pid -C /run/xl2tpd/server-control \
	>"$OUT/xl2tpd-server.log" 2>&1 &
for _ in $(seq 1 50); do [ -p /run/xl2tpd/server-control ] && break; sleep 0.2; done
[ -p /run/xl2tpd/server-control ] || { echo "xl2tpd LNS control pipe missing"; false; }
echo "xl2tpd LNS started (auth $AUTH)"
