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
