#!/usr/bin/env bash
# install-deps.sh - make a Debian 12 machine ready for ferry's demo and tests.
#
#   1. Debian packages from the system's own suite (iproute2, nftables, ...).
#   2. A working CRIU from Debian unstable, unpacked into a private prefix
#      (default /opt/ferry/criu) together with its own glibc, run through a
#      wrapper script; /usr/local/sbin/criu points at that wrapper.
#
# Idempotent: a second run finds everything in place and does no apt work.
# Needs root and no stdin. See scripts/README.md for the why.
#
# Usage: scripts/install-deps.sh [--check] [--no-apt] [--no-criu] [--no-link]
#                                [--upgrade] [--suite SUITE] [--lxd] [--incus] [-h]
# --lxd, --incus: also install Debian 12's LXD 5.0.2 / backports' Incus 6.0.4
#                 (scripts/daemons.sh starts them).
# Environment: FERRY_PREFIX (default /opt/ferry/criu), FERRY_CRIU_SUITE
#              (default sid), FERRY_DEBIAN_MIRROR (default: the system's own),
#              FERRY_CRIU_LINK (default /usr/local/sbin/criu).
set -euo pipefail

PREFIX=${FERRY_PREFIX:-/opt/ferry/criu}
SUITE=${FERRY_CRIU_SUITE:-sid}
MIRROR=${FERRY_DEBIAN_MIRROR:-}
LINK=${FERRY_CRIU_LINK:-/usr/local/sbin/criu}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
STAMP_NAME=.ferry-criu-stamp
# Oldest CRIU that works on this kind of machine (kernel >= 6.13 vDSO layout,
# detection of broken hardware breakpoints): 4.2.
MIN_CRIU_VERSION=4.2

# Packages from the system's own suite. Each entry: package:command-it-provides
# (the command is what --check looks for; "-" when there is none to look for).
APT_PACKAGES=(
	iproute2:ip
	nftables:nft
	util-linux:nsenter
	openssh-server:sshd
	openssh-client:ssh
	build-essential:-
	gcc:gcc
	libc6-dev:-
	make:make
	ca-certificates:-
	procps:ps
	kmod:modprobe
	# ferry report's HTML page is checked in a real headless browser.
	chromium:chromium
)

DO_APT=1
DO_CRIU=1
DO_LINK=1
CHECK_ONLY=0
UPGRADE=0
DO_LXD=0
DO_INCUS=0

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C
# Commands from sbin are needed below even when the caller's PATH lacks them.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# quiet CMD...: CMD's output shown only when it fails (see lib.sh).
quiet() { quiet_as install-deps "$@"; }

# retry CMD...: network steps get three tries, 5 s apart.
retry() {
	local i
	for i in 1 2 3; do
		"$@" && return 0
		[ $i = 3 ] || { log "retrying in 5 s: $*"; sleep 5; }
	done
	return 1
}

usage() {
	sed -n '2,18s/^# \{0,1\}//p' "$0"
}

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--check) CHECK_ONLY=1 ;;
		--no-apt) DO_APT=0 ;;
		--no-criu) DO_CRIU=0 ;;
		--no-link) DO_LINK=0 ;;
		--upgrade) UPGRADE=1 ;;
		--lxd) DO_LXD=1 ;;
		--incus) DO_INCUS=1 ;;
		--suite) [ $# -ge 2 ] || die "--suite needs a value"; SUITE=$2; shift ;;
		--suite=*) SUITE=${1#--suite=} ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
		esac
		shift
	done
}

# ---------------------------------------------------------------------------
# 1. Debian packages of the system's own suite
# ---------------------------------------------------------------------------

# Prints the packages of APT_PACKAGES that are not installed.
missing_apt_packages() {
	local entry
	for entry in "${APT_PACKAGES[@]}"; do
		pkg_installed "${entry%%:*}" || printf '%s\n' "${entry%%:*}"
	done
}

install_apt_packages() {
	local missing
	mapfile -t missing < <(missing_apt_packages)
	if [ ${#missing[@]} -eq 0 ]; then
		log "apt: all ${#APT_PACKAGES[@]} packages already installed"
		return 0
	fi
	log "apt: installing ${missing[*]}"
	retry quiet apt-get update </dev/null ||
		die "apt: apt-get update failed"
	# sshd and friends are not started by their package scripts.
	with_policy_rc quiet apt-get install -y --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" </dev/null ||
		die "apt: apt-get install failed"
	mapfile -t missing < <(missing_apt_packages)
	[ ${#missing[@]} -eq 0 ] || die "apt: still missing after install: ${missing[*]}"
}

check_apt_packages() {
	local entry pkg cmd rc=0
	for entry in "${APT_PACKAGES[@]}"; do
		pkg=${entry%%:*}
		cmd=${entry#*:}
		if ! pkg_installed "$pkg"; then
			echo "missing: Debian package $pkg"
			rc=1
		elif [ "$cmd" != - ] && ! command -v "$cmd" >/dev/null; then
			echo "missing: command $cmd (package $pkg)"
			rc=1
		fi
	done
	return $rc
}

# ---------------------------------------------------------------------------
# 2. CRIU from Debian unstable in a private prefix
# ---------------------------------------------------------------------------

# The system's main Debian archive URI: the first URIs: line of a stanza in
# debian.sources that is not the security archive, else the first such deb
# line of sources.list.
system_mirror() {
	local f=/etc/apt/sources.list.d/debian.sources uri=
	if [ -r "$f" ]; then
		uri=$(awk '
			BEGIN { RS = ""; FS = "\n" }
			{
				u = ""; s = ""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u); split(u, w, /[ \t]+/); u = w[1] }
					if ($i ~ /^Suites:/) s = $i
				}
				if (u != "" && u !~ /security/ && s !~ /-security/) { print u; exit }
			}' "$f")
	fi
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		uri=$(awk '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($i !~ /security/ && $(i+1) !~ /-security/) { print $i; exit }
			}' /etc/apt/sources.list)
	fi
	printf '%s\n' "$uri"
}

# The wrapper: runs the prefix's criu with the prefix's own dynamic loader and
# libraries, so the system's glibc stays as it is. It finds the prefix from
# its own location (through the /usr/local/sbin symlink too), and it execs,
# so go-criu's `criu swrk FD` keeps its fd. --library-path (not
# LD_LIBRARY_PATH) keeps the programs CRIU runs (ip, tar, nft, action
# scripts) on the system's libraries.
write_wrapper() {
	local root=$1 loader=$2 libdirs=$3 version=$4
	mkdir -p "$root/bin"
	cat >"$root/bin/criu.tmp" <<EOF
#!/bin/sh
# ferry: CRIU $version from Debian $SUITE, run with its own loader and libraries.
# Written by scripts/install-deps.sh; remove with: rm -rf $PREFIX $LINK
self=\$(readlink -f -- "\$0") || exit 127
root=\${self%/bin/*}
exec "\$root/$loader" --library-path "$libdirs" "\$root/usr/sbin/criu" "\$@"
EOF
	chmod 755 "$root/bin/criu.tmp"
	mv -f "$root/bin/criu.tmp" "$root/bin/criu"
}

# Prints the version a criu binary reports ("4.2.1"), or nothing.
criu_version_of() {
	"$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1
}

version_ge() { # version_ge A B: A >= B
	[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

# True when the prefix holds a working criu of the version its stamp names,
# from the suite asked for (any suite with the argument "any-suite").
prefix_ok() {
	local stamp=$PREFIX/$STAMP_NAME want have
	[ -r "$stamp" ] && [ -x "$PREFIX/bin/criu" ] || return 1
	[ "${1:-}" = any-suite ] || grep -qx "suite=$SUITE" "$stamp" || return 1
	want=$(sed -n 's/^version=//p' "$stamp")
	have=$(criu_version_of "$PREFIX/bin/criu")
	[ -n "$have" ] && [ "$have" = "$want" ]
}

fetch_criu() {
	local work apt_opts=() sources closure=() pkg deb loader libdirs d ver upstream
	[ -n "$MIRROR" ] || MIRROR=$(system_mirror)
	[ -n "$MIRROR" ] || die "criu: no Debian archive URI found in the apt sources; set FERRY_DEBIAN_MIRROR"
	[ -r "$KEYRING" ] || die "criu: $KEYRING missing (package debian-archive-keyring)"
	for d in apt-get apt-cache dpkg-deb; do
		command -v $d >/dev/null || die "criu: $d not found"
	done

	mkdir -p "$(dirname "$PREFIX")"
	work=$(mktemp -d "$(dirname "$PREFIX")/.criu-build.XXXXXX")
	# shellcheck disable=SC2064 # expand $work now
	trap "rm -rf '$work'" EXIT
	mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/state" \
		"$work/parts" "$work/debs" "$work/root"
	sources=$work/sources.list
	echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$sources"

	# Everything apt reads or writes is private, except its configuration
	# (apt.conf.d: proxies and the like still apply). The system's package
	# lists, cache, status and pins are neither read nor written, so the
	# system's apt still offers only its own suite afterwards.
	apt_opts=(
		-o "Dir::Etc::SourceList=$sources"
		-o "Dir::Etc::SourceParts=$work/parts"
		-o "Dir::Etc::Preferences=/dev/null"
		-o "Dir::Etc::PreferencesParts=$work/parts"
		-o "Dir::State=$work/state"
		-o "Dir::State::Lists=$work/lists"
		-o "Dir::State::status=/dev/null"
		-o "Dir::State::extended_states=$work/state/extended_states"
		-o "Dir::Cache=$work/cache"
		-o "Dir::Cache::archives=$work/cache/archives"
		-o "APT::Architecture=$(dpkg --print-architecture)"
		-o "APT::Sandbox::User=root"
		-o "Acquire::Languages=none"
		-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
	)

	log "criu: reading the package index of Debian $SUITE ($MIRROR) into a private apt state"
	retry quiet apt-get "${apt_opts[@]}" update </dev/null ||
		die "criu: apt-get update for $SUITE failed"
	ver=$(apt-cache "${apt_opts[@]}" show criu 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
	[ -n "$ver" ] || die "criu: Debian $SUITE has no criu package"
	upstream=${ver#*:}
	upstream=${upstream%%-*}
	upstream=${upstream%%+*}
	version_ge "$upstream" "$MIN_CRIU_VERSION" ||
		die "criu: Debian $SUITE serves criu $ver, older than $MIN_CRIU_VERSION which this machine needs"

	# The run-time closure of criu: Depends and Pre-Depends, recursively.
	# Virtual packages show up as <name>; the real providers are listed too.
	mapfile -t closure < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends \
		--no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances criu 2>/dev/null |
		grep -v '^[[:space:]<]' | sort -u)
	[ ${#closure[@]} -gt 0 ] || die "criu: could not resolve the dependencies of criu"
	log "criu: Debian $SUITE criu $ver; downloading ${#closure[@]} packages"
	(cd "$work/debs" && retry quiet apt-get "${apt_opts[@]}" download "${closure[@]}" </dev/null) ||
		die "criu: apt-get download failed"

	for deb in "$work"/debs/*.deb; do
		dpkg-deb -x "$deb" "$work/root"
	done

	# The loader and the library directories that exist in the prefix.
	# Loader symlinks in the packages (lib64/...) point at absolute paths,
	# i.e. at the system's loader: take a real file.
	loader=
	for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu usr/lib64 lib64; do
		if [ -f "$work/root/$d/ld-linux-x86-64.so.2" ] && [ ! -L "$work/root/$d/ld-linux-x86-64.so.2" ]; then
			loader=$d/ld-linux-x86-64.so.2
			break
		fi
	done
	if [ -z "$loader" ]; then
		# A symlink with a relative target inside the prefix is fine too.
		for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu usr/lib64 lib64; do
			pkg=$work/root/$d/ld-linux-x86-64.so.2
			if [ -L "$pkg" ] && [[ $(readlink "$pkg") != /* ]] && [ -f "$pkg" ]; then
				loader=$d/ld-linux-x86-64.so.2
				break
			fi
		done
	fi
	[ -n "$loader" ] || die "criu: no dynamic loader (ld-linux-x86-64.so.2) in the unpacked packages"
	[ -x "$work/root/usr/sbin/criu" ] || die "criu: usr/sbin/criu missing from the unpacked packages"
	libdirs=
	for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu usr/lib lib; do
		# Only directories that hold shared libraries and are not
		# symlinks into another one of them.
		if [ ! -d "$work/root/$d" ] || [ -L "$work/root/$d" ]; then
			continue
		fi
		compgen -G "$work/root/$d/*.so*" >/dev/null || continue
		# shellcheck disable=SC2016 # a literal $root, for the wrapper
		libdirs=${libdirs:+$libdirs:}'$root/'$d
	done
	[ -n "$libdirs" ] || die "criu: no library directory in the unpacked packages"

	# $libdirs holds literal $root references: the wrapper expands them.
	write_wrapper "$work/root" "$loader" "$libdirs" "$ver"
	"$work/root/bin/criu" --version >/dev/null 2>&1 ||
		die "criu: the unpacked criu does not start: $("$work/root/bin/criu" --version 2>&1 | head -n3)"
	ver=$(criu_version_of "$work/root/bin/criu")
	{
		echo "version=$ver"
		echo "suite=$SUITE"
		echo "mirror=$MIRROR"
		echo "loader=$loader"
		echo "libdirs=$libdirs"
		echo "installed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		for deb in "$work"/debs/*.deb; do
			echo "package=$(dpkg-deb -f "$deb" Package)=$(dpkg-deb -f "$deb" Version)"
		done
	} >"$work/root/$STAMP_NAME"

	# Swap the new prefix in: the old one, if any, is replaced whole.
	if [ -e "$PREFIX" ]; then
		mv "$PREFIX" "$work/old"
	fi
	mv "$work/root" "$PREFIX"
	rm -rf "$work"
	trap - EXIT
	log "criu: installed CRIU $ver into $PREFIX ($(du -sh "$PREFIX" | cut -f1))"
}

# True when $LINK is the symlink to our wrapper.
link_is_ours() {
	[ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$PREFIX/bin/criu" ]
}

install_link() {
	if link_is_ours; then
		return 0
	fi
	if [ -e "$LINK" ] || [ -L "$LINK" ]; then
		if [ -L "$LINK" ] && [[ $(readlink "$LINK") == */bin/criu ]] &&
			grep -q '^# ferry: CRIU' "$(readlink "$LINK")" 2>/dev/null; then
			: # ours from another prefix: repoint it
		else
			log "criu: $LINK exists and is not ferry's ($(readlink "$LINK" 2>/dev/null || echo 'a file')): left as it is"
			return 0
		fi
	fi
	mkdir -p "$(dirname "$LINK")"
	ln -sfn "$PREFIX/bin/criu" "$LINK"
	log "criu: $LINK -> $PREFIX/bin/criu"
}

install_criu() {
	if [ $UPGRADE = 0 ] && prefix_ok; then
		log "criu: $PREFIX already holds CRIU $(sed -n 's/^version=//p' "$PREFIX/$STAMP_NAME") (use --upgrade to refetch)"
	else
		fetch_criu
	fi
	[ $DO_LINK = 0 ] || install_link
}

# Runs `criu check` through the wrapper; prints CRIU's words on failure.
criu_check_ok() {
	local out
	out=$("$PREFIX/bin/criu" check 2>&1) || true
	if grep -q 'Looks good' <<<"$out"; then
		return 0
	fi
	printf '%s\n' "$out" | grep -Ev 'RLIMIT_NOFILE' | head -n 10 | sed 's/^/    /'
	return 1
}

check_criu() {
	local rc=0 have
	if ! [ -x "$PREFIX/bin/criu" ]; then
		echo "missing: CRIU wrapper $PREFIX/bin/criu"
		return 1
	fi
	have=$(criu_version_of "$PREFIX/bin/criu")
	if [ -z "$have" ]; then
		echo "broken: $PREFIX/bin/criu does not start"
		return 1
	fi
	if ! version_ge "$have" "$MIN_CRIU_VERSION"; then
		echo "broken: CRIU $have in $PREFIX is older than $MIN_CRIU_VERSION"
		rc=1
	fi
	if ! prefix_ok any-suite; then
		echo "broken: CRIU in $PREFIX does not match its stamp $PREFIX/$STAMP_NAME"
		rc=1
	fi
	if ! criu_check_ok; then
		echo "broken: 'criu check' does not say 'Looks good.'"
		rc=1
	fi
	if [ $DO_LINK = 1 ] && ! link_is_ours; then
		if [ -e "$LINK" ]; then
			echo "note: $LINK is not ferry's CRIU; daemons on PATH may use another criu"
		else
			echo "missing: symlink $LINK -> $PREFIX/bin/criu"
			rc=1
		fi
	fi
	return $rc
}

# ---------------------------------------------------------------------------
# Later: LXD and Incus (install_lxd / install_incus, check_lxd / check_incus)
# slot in here and in main below, each behind its own flag.
# ---------------------------------------------------------------------------

run_check() {
	local rc=0 out
	if [ $DO_APT = 1 ]; then
		out=$(check_apt_packages) || rc=1
		[ -z "$out" ] || printf '%s\n' "$out"
	fi
	if [ $DO_CRIU = 1 ]; then
		out=$(check_criu) || rc=1
		[ -z "$out" ] || printf '%s\n' "$out"
	fi
	if [ $rc = 0 ]; then
		log "check: ready"
	else
		log "check: not ready (see above)"
	fi
	return $rc
}

main() {
	parse_args "$@"
	[ "$(id -u)" = 0 ] || die "must run as root"
	case $PREFIX in /*) ;; *) die "FERRY_PREFIX must be an absolute path" ;; esac
	PREFIX=${PREFIX%/}
	if [ $CHECK_ONLY = 1 ]; then
		run_check
		return
	fi
	[ $DO_APT = 0 ] || install_apt_packages
	[ $DO_CRIU = 0 ] || install_criu
	if [ $DO_LXD = 1 ] || [ $DO_INCUS = 1 ]; then
		# shellcheck source=scripts/daemons.sh
		. "$(dirname "$0")/daemons.sh"
		[ $DO_LXD = 0 ] || install_lxd
		[ $DO_INCUS = 0 ] || install_incus
	fi
	run_check
	if [ $DO_CRIU = 1 ]; then
		"$PREFIX/bin/criu" --version >&2
	fi
}

main "$@"
