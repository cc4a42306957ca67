# shellcheck shell=bash disable=SC2034
# Names and helpers shared by up, down, selfcheck, leftovers (sourced; not executable on its own).
SE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SE_DIR/../lib.sh"

SE_NS=l2tpx-se                 # network namespace of the server and the target
SE_VETH_HOST=l2tpx-se0         # host end of the veth pair
SE_VETH_NS=l2tpx-se1           # namespace end
SE_HOST_IP=10.231.0.1          # /30 on the host end
SE_SERVER_IP=10.231.0.2        # /30 in the namespace: the VPN server
SE_TARGET_IP=10.231.1.1        # /32 on the namespace's lo: reachable only through the VPN
SE_TARGET_NAME=target.vpn.test # answered by the target's DNS responder (via SecureNAT's DNS relay)
SE_BRIDGE_DEV=l2tpx            # bridge mode: the hub's tap is tap_l2tpx in the netns
SE_BRIDGE_GW=192.168.30.254    # bridge mode: the tap's address, the VPN clients' gateway
SE_ADMIN_PORT=5555             # vpncmd admin listener (TCP, namespace only)
SE_HUB=VPN
SE_USER=vpnuser
SE_VPNSERVER=/usr/libexec/softether/vpnserver/vpnserver
SE_MOUNTPOINTS="/var/lib/softether /var/log/softether /run/softether" # hard-coded in the Debian build
SE_STATE="$INTEROP_DIR/.state/softether" # same as $(state_dir softether), without creating it
SE_PY=/usr/bin/python3
[ -x "$SE_PY" ] || SE_PY=python3

# se_pid_ok PIDFILE PATTERN: true if the pid in PIDFILE is alive and its command line contains PATTERN
# (guards against killing a recycled pid).
se_pid_ok() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(cat "$1")
	[ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# se_vpncmd ARGS...: run vpncmd in the server's mount+net namespaces against the admin port.
se_vpncmd() {
	nsenter -t "$(cat "$SE_STATE/vpnserver.pid")" -m -n \
		vpncmd "$SE_SERVER_IP:$SE_ADMIN_PORT" /SERVER "$@"
}

# leftovers: print anything of this harness still present on the host; false if something is.
leftovers() {
	local found=0 p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		case "$cmd" in
		# up's sh -c wrappers name the state dir; other commands may too (a flock waiting to run a
		# benchmark with BENCH_ENV=.../kv) and are not ours
		"$SE_VPNSERVER"* | *"$SE_DIR/target.py"* | "sh -c "*"$SE_STATE"*)
			echo "process ${p#/proc/}: $cmd"
			found=1
			;;
		esac
	done
	if ip netns list 2>/dev/null | grep -qw "$SE_NS" || [ -e "/run/netns/$SE_NS" ]; then
		echo "netns $SE_NS"
		found=1
	fi
	if ip link show "$SE_VETH_HOST" >/dev/null 2>&1; then echo "link $SE_VETH_HOST"; found=1; fi
	if [ -n "$(ip route show table all type unreachable "$SE_TARGET_IP/32" 2>/dev/null)" ]; then
		echo "route unreachable $SE_TARGET_IP"
		found=1
	fi
	if [ -e "/etc/netns/$SE_NS" ]; then echo "dir /etc/netns/$SE_NS"; found=1; fi
	if command -v nft >/dev/null && nft list table ip l2tpx_loss >/dev/null 2>&1; then
		echo "nftables table ip l2tpx_loss (./loss)"
		found=1
	fi
	if findmnt -rn -o TARGET | grep -E "softether|$SE_NS" >/dev/null; then
		echo "mounts: $(findmnt -rn -o TARGET | grep -E "softether|$SE_NS" | tr '\n' ' ')"
		found=1
	fi
	if [ -e "$SE_STATE" ]; then echo "state dir $SE_STATE"; found=1; fi
	[ "$found" = 0 ]
}

# se_start_server ST: start vpnserver in the netns, in its own mount namespace with the hard-coded paths
# bind-mounted from the state directory ST (its configuration persists there: up ends with Flush).
se_start_server() {
	# shellcheck disable=SC2016 # the sh -c script expands its own arguments
	without_inherited_fds setsid ip netns exec "$SE_NS" unshare -m --propagation private sh -c '
	st=$1; shift
	mount --bind "$st/lib" /var/lib/softether && mount --bind "$st/log" /var/log/softether &&
		mount --bind "$st/run" /run/softether || exit 1
	echo $$ >"$st/vpnserver.pid"
	exec "$@"' sh "$1" "$SE_VPNSERVER" start --foreground </dev/null >>"$1/vpnserver.log" 2>&1 &
}

# se_udp_bound PORT: true if something in the netns listens on UDP PORT.
se_udp_bound() { ip netns exec "$SE_NS" ss -Hlun "sport = :$1" | grep -q .; }
