# lib.sh - helpers shared by install-deps.sh and daemons.sh (sourced).

# quiet_as PREFIX CMD...: runs CMD with its output kept aside, shown (the
# last 40 lines, under a "PREFIX: failed" line) only when it fails;
# FERRY_VERBOSE=1 shows it all as it comes.
quiet_as() {
	local prefix=$1 out rc=0
	shift
	if [ "${FERRY_VERBOSE:-0}" = 1 ]; then
		"$@" >&2
		return
	fi
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		printf '%s: failed (%s): %s\n' "$prefix" "$rc" "$*" >&2
		tail -n 40 "$out" | sed 's/^/    /' >&2
	fi
	rm -f "$out"
	return $rc
}

# pkg_installed PKG: is the Debian package installed?
pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# with_policy_rc CMD...: runs CMD with package scripts forbidden to start
# daemons (there is no init system here to supervise them; ferry starts
# what it needs itself).
with_policy_rc() {
	local made=0 rc=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made=1
	fi
	"$@" || rc=$?
	[ $made = 0 ] || rm -f /usr/sbin/policy-rc.d
	return $rc
}
