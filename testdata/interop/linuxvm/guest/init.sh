#!/bin/bash
# Per-boot init of the L2TP/IPsec server VM (run as PID 1 by /sbin/l2tpvm-init from the 9p share /vm).
# /vm/cfg/params.env says which server and auth; logs and results go to /vm/out; /vm/ctl has requests.
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
G=/vm/cfg/guest
OUT=/vm/out
R=/run/l2tpvm
mkdir -p "$OUT"
exec >>"$OUT/init.log" 2>&1
say() { echo "l2tpvm: $*"; echo "l2tpvm: $*" >/dev/console; }
fail() {
	say "FAILED: $*"
	echo "$*" >"$OUT/failed"
	sleep 1
	echo o >/proc/sysrq-trigger
	sleep 60
}
set -a
# shellcheck source=/dev/null
. /vm/cfg/params.env
set +a
say "booting: server=$KIND auth=$AUTH kernel $(uname -r)"

mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm "$R" /run/lock /var/log
mount -t devpts -o ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
hostname l2tpvm

# One modprobe for all (one each took about 1.5 s under TCG); -a goes on past a module it cannot load.
modprobe -qa dummy veth esp4 xfrm_user xfrm4_tunnel ppp_generic ppp_async ppp_deflate bsd_comp \
	xt_policy iptable_filter iptable_nat xt_MASQUERADE nf_nat || true
sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
	net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.all.send_redirects=0 net.ipv6.conf.all.disable_ipv6=1 || true

ip link set lo up
ip link set eth0 up
ip addr add "$SERVER_IP/24" dev eth0
ip route add default via 10.0.2.2 dev eth0
# The target: an address on a dummy interface, reachable only from ppp+ (see the firewall below).
ip link add tgt0 type dummy
ip link set tgt0 up
ip addr add "$TARGET_IP/32" dev tgt0
# IPV6=yes: IPv6 on the PPP links only (eth0 keeps it off; "all" above also set "default", which new ppp
# interfaces copy), the target's IPv6 address on tgt0, and Router Advertisements (ra.py) that give each PPP
# link a /64 of $PREFIX6, as radvd would after pppd's IPv6CP.
target6=()
if [ "${IPV6:-no}" = yes ]; then
	sysctl -qw net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.autoconf=0 \
		net.ipv6.conf.lo.disable_ipv6=0 net.ipv6.conf.tgt0.disable_ipv6=0 || fail "IPv6 sysctls"
	ip -6 addr add "$TARGET_IP6/128" dev tgt0 nodad || fail "IPv6 target address"
	python3 "$G/ra.py" --prefix "$PREFIX6" >"$OUT/ra.log" 2>&1 &
	target6=(--addr6 "$TARGET_IP6")
fi

# Firewall (iptables, nft backend): the target and the PPP addresses only from ppp+, and no L2TP outside IPsec.
# qemu's user-mode net cannot be restrict=on (it then drops the guest's UDP replies to hostfwd), so the guest
# itself lets out of eth0 only IKE/NAT-T (UDP 500/4500, which carries the ESP) and packets IPsec will encrypt.
# One iptables-restore (19 iptables calls took about 2 s under TCG); --noflush keeps the built-in chains' state.
iptables-restore --noflush <<RULES || fail "iptables-restore"
*filter
:FORWARD DROP [0:0]
:L2TPVM - [0:0]
:L2TPVM_OUT - [0:0]
:L2TPVM_EGRESS - [0:0]
-A L2TPVM -p udp --dport 1701 -m policy --dir in --pol none -j DROP
-A L2TPVM -d $TARGET_IP -i ppp+ -j ACCEPT
-A L2TPVM -d $TARGET_IP -j DROP
-A L2TPVM -d $PPP_LOCAL ! -i ppp+ -j DROP
-A INPUT -j L2TPVM
-A L2TPVM_OUT -p udp --sport 1701 -m policy --dir out --pol none -j DROP
-A OUTPUT -j L2TPVM_OUT
-A L2TPVM_EGRESS -p udp -m multiport --sports 500,4500 -j ACCEPT
-A L2TPVM_EGRESS -m policy --dir out --pol ipsec -j ACCEPT
-A L2TPVM_EGRESS -j DROP
-A OUTPUT -o eth0 -j L2TPVM_EGRESS
-A INPUT -i eth0 -p udp -m multiport --dports 500,4500 -j ACCEPT
-A INPUT -i eth0 -m policy --dir in --pol ipsec -j ACCEPT
-A INPUT -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -i eth0 -j DROP
COMMIT
RULES

# Target services: HTTP + UDP echo (python), DNS (dnsmasq), all bound to the target address.
python3 "$G/target.py" --addr "$TARGET_IP" "${target6[@]}" --big-size "$BIG_SIZE" --big-file "$R/big.bin" \
	--sha-file "$OUT/big.sha256" >"$OUT/target.log" 2>&1 &
dnsmasq --no-resolv --no-hosts --bind-interfaces --listen-address="$TARGET_IP" --except-interface=lo \
	--user=root --group=root --pid-file="$R/dnsmasq.pid" --local=/vpn.test/ \
	--address="/$TARGET_NAME/$TARGET_IP" --log-queries --log-facility="$OUT/dnsmasq.log" ||
	fail "dnsmasq did not start"

# IKE daemon (server-libreswan.sh / server-strongswan.sh), then xl2tpd LNS + pppd.
# shellcheck source=/dev/null
. "$G/server-$KIND.sh" || fail "$KIND did not start"
# shellcheck source=/dev/null
. "$G/lns.sh" || fail "xl2tpd did not start"

for _ in $(seq 1 600); do [ -s "$OUT/big.sha256" ] && break; sleep 0.2; done
[ -s "$OUT/big.sha256" ] || fail "target server did not come up"
{
	echo "BIG_SHA256=$(cut -d' ' -f1 "$OUT/big.sha256")"
	echo "UPTIME=$(cut -d' ' -f1 /proc/uptime)"
} >"$OUT/ready.tmp"
mv "$OUT/ready.tmp" "$OUT/ready"
say "server ready"

# delete_sas delete-child|delete-ike: the server ends our SAs, as its administrator would.
# delete-child: the IPsec SAs go, the ISAKMP SAs stay (the server sends ESP Deletes).
# delete-ike: Libreswan deletes the ISAKMP SA alone (as at the end of its lifetime);
# strongSwan can only terminate the whole IKE SA (its IPsec SA goes too).
delete_sas() {
	local what=$1 states rc=1 n
	case "$KIND" in
	libreswan)
		ipsec whack --showstates
		if [ "$what" = delete-child ]; then
			states=$(ipsec whack --trafficstatus | sed -n 's/^[0-9]* *#\([0-9][0-9]*\): .*type=ESP.*/\1/p')
		else
			# The ISAKMP SA: Main Mode (MAIN_R3) or Aggressive Mode (AGGR_R2).
			states=$(ipsec whack --showstates | sed -n 's/^[0-9]* *#\([0-9][0-9]*\): .* STATE_\(MAIN_[RI]3\|AGGR_R2\) .*/\1/p')
		fi
		for n in $states; do ipsec whack --deletestate "$n" && rc=0; done
		sleep 1
		ipsec whack --showstates
		;;
	strongswan)
		swanctl --list-sas
		if [ "$what" = delete-child ]; then
			swanctl --terminate --child "${CONN:-l2tp-psk}" --timeout 10 && rc=0
		else
			swanctl --terminate --ike "${CONN:-l2tp-psk}" --timeout 10 && rc=0
		fi
		;;
	esac
	return $rc
}

# Idle loop: run requests the host drops into /vm/ctl (selfcheck), keep reaping children.
mkdir -p /vm/ctl
while :; do
	for req in /vm/ctl/*.req; do
		[ -e "$req" ] || continue
		id=$(basename "$req" .req)
		what=$(cat "$req")
		rm -f "$req"
		case "$what" in
		selftest*)
			say "selftest $id starting"
			# shellcheck disable=SC2086
			env ${what#selftest} bash "$G/selftest.sh" >"$OUT/selftest-$id.log" 2>&1
			echo $? >"$OUT/selftest-$id.rc"
			say "selftest $id done rc $(cat "$OUT/selftest-$id.rc")"
			;;
		state)
			{ ip -s xfrm state; ip xfrm policy; iptables -L -v -n; ip addr; ps ax; cat /proc/net/snmp; } >"$OUT/state-$id.txt" 2>&1
			echo 0 >"$OUT/state-$id.rc"
			;;
		delete-child | delete-ike)
			say "$what ($KIND) for $id"
			delete_sas "$what" >"$OUT/$what-$id.log" 2>&1
			echo $? >"$OUT/$what-$id.rc"
			;;
		esac
	done
	sleep 1
done
