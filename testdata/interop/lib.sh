# shellcheck shell=bash
# Shared helpers for the interop harnesses under testdata/interop/ (source it, do not run it).
# Stable names used by several harnesses: log, die, need_root, kv, state_dir. Keep this file small.

INTEROP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# log MSG...: one diagnostic line on stderr, prefixed with the calling script's name.
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# die MSG...: log and exit 1.
die() { log "error: $*"; exit 1; }

# need_root: exit unless running as root.
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

# without_inherited_fds CMD...: run CMD with only stdin/stdout/stderr open. A server we start in the
# background must not inherit a caller's descriptors: one of them may be a flock(1) lock, which the server
# would then hold for as long as it runs (a later `flock ... down` waits for ever).
without_inherited_fds() {
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
		done
		exec "$@"
	)
}

# kv KEY VALUE: print one KEY=VALUE line on stdout (the machine-readable output of an "up" script).
kv() { printf '%s=%s\n' "$1" "$2"; }

# state_dir NAME: print (and create) the gitignored per-harness state directory.
state_dir() {
	local d="$INTEROP_DIR/.state/$1"
	mkdir -p "$d"
	printf '%s\n' "$d"
}

# apt_install PKG...: install Debian packages non-interactively if any is missing, quietly, waiting for
# apt locks held by a concurrent apt-get; never lets a package's maintainer script start services.
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing: ${missing[*]}"
	local policy=/usr/sbin/policy-rc.d had_policy=0 rc=0 out
	[ -e "$policy" ] && had_policy=1
	if [ "$had_policy" = 0 ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"; fi
	out=$(apt-get -o DPkg::Lock::Timeout=300 update -qq 2>&1 &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
			--no-install-recommends "${missing[@]}" 2>&1) || rc=$?
	[ "$had_policy" = 1 ] || rm -f "$policy"
	[ "$rc" -eq 0 ] || { printf '%s\n' "$out" >&2; die "apt-get install failed (rc $rc)"; }
}

# stall_mm3 NFT TABLE MATCH / unstall_mm3 NFT TABLE: a filter in front of the server that drops every
# Main Mode MM3 (a cleartext ISAKMP Identity Protection message whose first payload is KE: header byte 16,
# next payload, = 4; byte 18, exchange type, = 2; byte 19, flags, encryption bit clear) that MATCH selects,
# so the server answers MM1 and never MM3, as SoftEther and Libreswan did in CI. NFT is the nft command
# to use (e.g. "ip netns exec NS nft"). unstall_mm3 removes it and prints "stall-mm3: dropped N".
stall_mm3() {
	local nft=$1 table=$2 match=$3
	$nft delete table ip "$table" 2>/dev/null || true
	printf 'table ip %s {\n\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n\t\t%s @th,192,8 4 @th,208,8 2 @th,223,1 0 counter drop\n\t}\n}\n' \
		"$table" "$match" | $nft -f -
}
unstall_mm3() {
	local nft=$1 table=$2 n
	n=$($nft list table ip "$table" 2>/dev/null | sed -n 's/.*counter packets \([0-9]*\).*/\1/p') || true
	$nft delete table ip "$table" 2>/dev/null || true
	echo "stall-mm3: dropped ${n:-0}"
}
