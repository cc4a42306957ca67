# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this file
# Helpers shared by the linuxvm scripts (sourced, not run).
LINUXVM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -r "$LINUXVM_DIR/../lib.sh" ]; then
	# shellcheck source=../lib.sh
	. "$LINUXVM_DIR/../lib.sh"
fi
declare -F log >/dev/null || log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
declare -F die >/dev/null || die() { log "error: $*"; exit 1; }
declare -F need_root >/dev/null || need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }
declare -F kv >/dev/null || kv() { printf '%s=%s\n' "$1" "$2"; }
declare -F state_dir >/dev/null || state_dir() {
	local d="$LINUXVM_DIR/../.state/$1"
	mkdir -p "$d"
	(cd "$d" && pwd)
}

# Where built images live (outside the repo, survives between runs).
VM_CACHE=${L2TP_VM_CACHE:-/var/tmp/l2tpproxy-vm}

# Packages debootstrap puts into the guest (libreswan is a real install; strongSwan is unpacked, see build-image).
VM_PACKAGES="linux-image-amd64,libreswan,xl2tpd,ppp,iproute2,iptables,python3,dnsmasq-base,curl,kmod,procps,netbase,tcpdump,libcap2,libgmp10,libip4tc2,libssl3,bind9-host"
VM_STRONGSWAN_DEBS="libstrongswan libstrongswan-standard-plugins strongswan-libcharon strongswan-charon strongswan-swanctl"

# server_kind_ok KIND: exit unless KIND is a known server.
server_kind_ok() {
	case "$1" in libreswan | strongswan) ;; *) die "server kind must be libreswan or strongswan, not '$1'" ;; esac
}

# vm_state NAME: the state dir of one VM (one per server kind so both can run at once).
vm_state() { state_dir "linuxvm-$1"; }

# default_ports KIND: set IKE_PORT / NATT_PORT unless given in the environment.
default_ports() {
	case "$1" in
	libreswan) IKE_PORT=${IKE_PORT:-15500} NATT_PORT=${NATT_PORT:-14500} ;;
	strongswan) IKE_PORT=${IKE_PORT:-25500} NATT_PORT=${NATT_PORT:-24500} ;;
	esac
}

# pid_alive PIDFILE: true when the pid in PIDFILE is a running qemu.
pid_alive() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(cat "$1")
	[ -d "/proc/$pid" ] && grep -q qemu-system "/proc/$pid/cmdline" 2>/dev/null
}
