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

# make_pki SERVERDIR CLIENTDIR: a throw-away CA (2048-bit) that issues the server's certificate
# (CN and SAN vpn.interop.test) and the client's, both with 4096-bit keys and digitalSignature key usage
# (strongSwan refuses IKE end entities without it). SERVERDIR gets ca.pem, server.pem and server.key
# (PKCS#1, for swanctl's rsa/ directory) and server.p12 (both, for Libreswan); CLIENTDIR ca.pem, client.pem, client.key, readable by uid 65534
# (the interop client). The CA key is deleted afterwards. Nothing here is a secret worth keeping.
make_pki() {
	local s=$1 c=$2 tmp
	tmp=$(mktemp -d)
	mkdir -p "$s" "$c"
	local subj="/C=CH/O=l2tpproxy-interop"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$s/ca.pem" -days 7 \
		-subj "$subj/CN=l2tpproxy-interop-CA" -addext basicConstraints=critical,CA:true \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
	local who cn
	for who in server client; do
		cn=vpn.interop.test
		[ "$who" = server ] || cn=l2tpproxy-interop-client
		openssl req -newkey rsa:4096 -nodes -keyout "$tmp/$who.key" -out "$tmp/$who.csr" -subj "$subj/CN=$cn" 2>/dev/null || return 1
		printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
			"$([ "$who" = server ] && echo "subjectAltName=DNS:vpn.interop.test")" >"$tmp/$who.ext"
		openssl x509 -req -in "$tmp/$who.csr" -CA "$s/ca.pem" -CAkey "$tmp/ca.key" -CAserial "$tmp/ca.srl" -CAcreateserial -days 7 \
			-extfile "$tmp/$who.ext" -out "$tmp/$who.pem" 2>/dev/null || return 1
		openssl rsa -in "$tmp/$who.key" -traditional -out "$tmp/$who.pkcs1" 2>/dev/null || return 1
	done
	cp "$tmp/server.pem" "$s/server.pem"
	cp "$tmp/server.pkcs1" "$s/server.key"
	# The same for Libreswan's NSS database (pk12util): no password, ciphers NSS reads, nickname l2tpvm-server.
	openssl pkcs12 -export -in "$tmp/server.pem" -inkey "$tmp/server.key" -name l2tpvm-server -passout pass: \
		-keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out "$s/server.p12" 2>/dev/null || return 1
	cp "$s/ca.pem" "$c/ca.pem"
	cp "$tmp/client.pem" "$c/client.pem"
	cp "$tmp/client.key" "$c/client.key" # PKCS#8, as openssl writes it
	chmod 755 "$c"
	chmod 644 "$c/ca.pem" "$c/client.pem"
	chgrp 65534 "$c/client.key" && chmod 640 "$c/client.key"
	rm -rf "$tmp"
}
