#!/usr/bin/env bash
# daemons.sh - install, start and stop the LXD and Incus daemons ferry's
# tests drive, on a Debian 12 machine without systemd.
#
#   scripts/daemons.sh install [lxd|incus|all]   apt packages (idempotent)
#   scripts/daemons.sh start   [lxd|incus|all]   start by hand, preseed, import the busybox image
#   scripts/daemons.sh stop    [lxd|incus|all]   stop the daemons (containers are stopped with them)
#   scripts/daemons.sh status  [lxd|incus|all]   exit 0 when every daemon named answers
#
# Sourced by scripts/install-deps.sh (--lxd, --incus) for the install_*
# functions. Environment: FERRY_BUSYBOX_ALIAS (default busybox),
# FERRY_DAEMON_PATH (the daemons' PATH; /usr/local/sbin first so that the
# project's CRIU 4.2.1 wins over Debian's broken 3.17), FERRY_INCUS_IDMAPPED=1
# (start incusd with idmapped mounts left on: restores then break).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

DAEMON_PATH=${FERRY_DAEMON_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
BUSYBOX_ALIAS=${FERRY_BUSYBOX_ALIAS:-busybox}
FERRY_STATE=${FERRY_STATE_DIR:-/var/lib/ferry}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
APT_LOCK=(-o DPkg::Lock::Timeout=600)

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dlog() { printf 'daemons: %s\n' "$*" >&2; }
ddie() { printf 'daemons: error: %s\n' "$*" >&2; exit 1; }

# dquiet CMD...: CMD's output shown only when it fails (see lib.sh).
dquiet() { quiet_as daemons "$@"; }

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------

# Debian 12's lxd 5.0.2; iptables because LXD's firewall code wants it.
install_lxd() {
	if pkg_installed lxd && pkg_installed lxd-client && pkg_installed iptables; then
		dlog "lxd: already installed ($(dpkg-query -W -f='${Version}' lxd))"
		return 0
	fi
	local t0=$SECONDS
	dlog "lxd: installing lxd, lxd-client and iptables"
	dquiet apt-get "${APT_LOCK[@]}" update </dev/null || ddie "lxd: apt-get update failed"
	with_policy_rc dquiet apt-get "${APT_LOCK[@]}" install -y --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		lxd lxd-client iptables </dev/null || ddie "lxd: apt-get install failed"
	dlog "lxd: installed $(dpkg-query -W -f='${Version}' lxd) in $((SECONDS - t0)) s"
}

# Debian 12 backports' incus-base and incus-client 6.0.4. bookworm-backports
# is added to a PRIVATE source list used for this install only: the system's
# apt sources and lists are left as they were (its apt then shows the
# packages as installed, with no candidate, which is what we want: nothing
# else on the machine gets upgraded from backports).
install_incus() {
	if pkg_installed incus-base && pkg_installed incus-client; then
		dlog "incus: already installed ($(dpkg-query -W -f='${Version}' incus-base))"
		return 0
	fi
	local t0=$SECONDS work mirror opts
	mirror=${FERRY_DEBIAN_MIRROR:-$(incus_mirror)}
	[ -n "$mirror" ] || ddie "incus: no Debian archive URI in the apt sources; set FERRY_DEBIAN_MIRROR"
	work=$FERRY_STATE/apt-backports
	mkdir -p "$work/parts" "$work/lists/partial"
	rm -f "$work/parts/"*
	# The system's own sources (for the dependencies) plus backports.
	cp /etc/apt/sources.list.d/*.sources "$work/parts/" 2>/dev/null || true
	[ ! -r /etc/apt/sources.list ] || cp /etc/apt/sources.list "$work/parts/system.list"
	echo "deb [signed-by=$KEYRING] $mirror bookworm-backports main" >"$work/parts/ferry-backports.list"
	opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
		-o "Dir::State::Lists=$work/lists" -o "Acquire::Languages=none"
		-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false")
	dlog "incus: installing incus-base and incus-client from bookworm-backports (private source list in $work)"
	dquiet apt-get "${APT_LOCK[@]}" "${opts[@]}" update </dev/null || ddie "incus: apt-get update failed"
	with_policy_rc dquiet apt-get "${APT_LOCK[@]}" "${opts[@]}" install -y --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		-t bookworm-backports incus-base incus-client </dev/null || ddie "incus: apt-get install failed"
	dlog "incus: installed $(dpkg-query -W -f='${Version}' incus-base) in $((SECONDS - t0)) s"
}

incus_mirror() {
	awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null
}

# The busybox-static binary, unpacked once into $FERRY_STATE/busybox.
busybox_binary() {
	local dir=$FERRY_STATE/busybox deb
	if [ -x "$dir/bin/busybox" ]; then
		echo "$dir/bin/busybox"
		return 0
	fi
	mkdir -p "$dir/dl"
	(cd "$dir/dl" && dquiet apt-get "${APT_LOCK[@]}" download busybox-static </dev/null) ||
		ddie "busybox: apt-get download busybox-static failed"
	deb=$(ls "$dir"/dl/busybox-static_*.deb | head -n1)
	dpkg-deb -x "$deb" "$dir/x"
	mkdir -p "$dir/bin"
	cp "$dir/x/bin/busybox" "$dir/bin/busybox"
	rm -rf "$dir/x" "$dir/dl"
	echo "$dir/bin/busybox"
}

# build_image DIR: metadata.tar.gz and rootfs.tar.gz of a busybox container
# whose init (busybox init, empty inittab) just waits, and powers off on
# SIGPWR/SIGTERM like a normal distribution.
build_image() {
	local out=$1 bb root
	if [ -s "$out/metadata.tar.gz" ] && [ -s "$out/rootfs.tar.gz" ]; then
		return 0
	fi
	bb=$(busybox_binary)
	root=$(mktemp -d)
	mkdir -p "$root/rootfs"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,var/log,mnt}
	cp "$bb" "$root/rootfs/bin/busybox"
	local app
	while read -r app; do
		[ "$app" = bin/busybox ] && continue
		ln -sf /bin/busybox "$root/rootfs/$app"
	done < <("$bb" --list-full)
	chmod 1777 "$root/rootfs/tmp"
	: >"$root/rootfs/etc/inittab"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/rootfs/etc/passwd"
	printf 'root:x:0:\n' >"$root/rootfs/etc/group"
	printf 'c1\n' >"$root/rootfs/etc/hostname"
	cat >"$root/metadata.yaml" <<EOF
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: busybox test image
  os: busybox
  release: "$("$bb" | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')"
EOF
	mkdir -p "$out"
	tar -C "$root" --numeric-owner --owner=0 --group=0 -czf "$out/metadata.tar.gz.tmp" metadata.yaml
	tar -C "$root/rootfs" --numeric-owner --owner=0 --group=0 -czf "$out/rootfs.tar.gz.tmp" .
	mv "$out/metadata.tar.gz.tmp" "$out/metadata.tar.gz"
	mv "$out/rootfs.tar.gz.tmp" "$out/rootfs.tar.gz"
	rm -rf "$root"
}

# ---------------------------------------------------------------------------
# daemons
# ---------------------------------------------------------------------------

# client NAME: the CLI of daemon NAME.
client() { case $1 in lxd) echo lxc ;; incus) echo incus ;; esac; }

answers() {
	case $1 in
	lxd) lxc info >/dev/null 2>&1 ;;
	incus) incus info >/dev/null 2>&1 ;;
	esac
}

daemon_pid() {
	case $1 in
	lxd) pgrep -x lxd -o 2>/dev/null || true ;;
	incus) pgrep -x incusd -o 2>/dev/null || true ;;
	esac
}

start_daemon() {
	local name=$1 t0=$SECONDS
	if answers "$name"; then
		dlog "$name: already running"
	else
		case $name in
		lxd)
			command -v lxd >/dev/null || ddie "lxd: not installed (scripts/daemons.sh install lxd)"
			mkdir -p /var/log/lxd
			getent group lxd >/dev/null || groupadd --system lxd
			# From /: the daemon runs rsync and others in its working
			# directory, which must outlive whoever started it.
			(cd / && exec env -i PATH="$DAEMON_PATH" HOME=/root LANG=C.UTF-8 \
				setsid lxd --group lxd --logfile=/var/log/lxd/lxd.log) </dev/null >>/var/log/lxd/lxd.out 2>&1 &
			timeout 60 lxd waitready || ddie "lxd: did not become ready (see /var/log/lxd/lxd.log)"
			;;
		incus)
			[ -x /usr/libexec/incus/incusd ] || ddie "incus: not installed (scripts/daemons.sh install incus)"
			mkdir -p /var/log/incus
			getent group incus-admin >/dev/null || groupadd --system incus-admin
			# Not /etc/default/incus: it puts /usr/sbin (Debian's broken
			# criu) first. Idmapped mounts off: CRIU 4.2.1 drops the
			# idmapped root mount on restore (rootfs unwritable).
			local idmap=INCUS_IDMAPPED_MOUNTS_DISABLE=1
			# FERRY_INCUS_IDMAPPED=1 keeps them on: only tests that show
			# the broken restore want that.
			[ "${FERRY_INCUS_IDMAPPED:-0}" != 1 ] || idmap=FERRY_INCUS_IDMAPPED=1
			(cd / && exec env -i PATH="$DAEMON_PATH:/usr/libexec/incus" HOME=/root LANG=C.UTF-8 \
				"$idmap" \
				setsid /usr/libexec/incus/incusd --group incus-admin --logfile /var/log/incus/incusd.log) \
				</dev/null >>/var/log/incus/incusd.out 2>&1 &
			timeout 60 incus admin waitready || ddie "incus: did not become ready (see /var/log/incus/incusd.log)"
			;;
		esac
		dlog "$name: started in $((SECONDS - t0)) s"
	fi
	setup_daemon "$name"
}

# setup_daemon NAME: preseed (dir pool, no network) and the busybox image.
setup_daemon() {
	local name=$1 cli
	cli=$(client "$name")
	if ! $cli storage show default >/dev/null 2>&1; then
		local preseed
		preseed='storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk'
		case $name in
		lxd) printf '%s\n' "$preseed" | lxd init --preseed ;;
		incus) printf '%s\n' "$preseed" | incus admin init --preseed ;;
		esac
		dlog "$name: preseeded (dir pool, no network)"
	fi
	if ! $cli image info "$BUSYBOX_ALIAS" >/dev/null 2>&1; then
		build_image "$FERRY_STATE/image"
		dquiet $cli image import "$FERRY_STATE/image/metadata.tar.gz" "$FERRY_STATE/image/rootfs.tar.gz" \
			--alias "$BUSYBOX_ALIAS" || ddie "$name: image import failed"
		dlog "$name: imported image $BUSYBOX_ALIAS"
	fi
}

stop_daemon() {
	local name=$1 pid i
	pid=$(daemon_pid "$name")
	if [ -z "$pid" ]; then
		dlog "$name: not running"
		return 0
	fi
	case $name in
	lxd) timeout 60 lxd shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true ;;
	incus) timeout 60 incus admin shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true ;;
	esac
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null || true
	fi
	dlog "$name: stopped"
}

# ---------------------------------------------------------------------------
# a second "host": a daemon in its own network + mount namespace, same paths
# ---------------------------------------------------------------------------
# Two daemons with different data directories on one host can move an
# instance one way only (CRIU re-creates /dev/.incus-mounts from the
# source's host path). A daemon in its own mount namespace sees its own
# directories bound over the SAME paths (/var/lib/KIND, /var/log/KIND), and in
# its own network namespace listens on an address that exists only there.
#
#   scripts/daemons.sh ns-start lxd|incus NAME ADDR/PREFIX
#   scripts/daemons.sh ns-link NAME1 NAME2            (a veth between two)
#   scripts/daemons.sh ns-stop lxd|incus NAME
#   scripts/daemons.sh ns-env lxd|incus NAME           (client environment)
#
# State: $FERRY_STATE/ns/NAME/{lib,log,pid}; network namespace ferry-NAME.

ns_dir() { echo "$FERRY_STATE/ns/$1"; }

# ns_env KIND NAME: the environment a client needs to reach that daemon.
ns_env() {
	local d
	d=$(ns_dir "$2")
	case $1 in
	lxd) printf 'LXD_SOCKET=%s\nLXD_DIR=%s\nLXD_CONF=%s\n' "$d/lib/unix.socket" "$d/lib" "$FERRY_STATE/ns/client-lxd" ;;
	incus) printf 'INCUS_SOCKET=%s\nINCUS_DIR=%s\nINCUS_CONF=%s\n' "$d/lib/unix.socket" "$d/lib" "$FERRY_STATE/ns/client-incus" ;;
	esac
}

# ns_cli KIND NAME ARGS...: runs the client against the namespaced daemon,
# inside its network namespace.
ns_cli() {
	local kind=$1 name=$2
	shift 2
	local -a env
	mapfile -t env < <(ns_env "$kind" "$name")
	nsenter --net="/run/netns/ferry-$name" -- env "${env[@]}" "$(client "$kind")" "$@"
}

ns_start() {
	local kind=$1 name=$2 addr=$3 d lib log run daemon t0=$SECONDS i
	[ -n "$addr" ] || ddie "ns-start: ADDR/PREFIX missing"
	d=$(ns_dir "$name")
	if [ -s "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
		dlog "$kind@$name: already running"
		return 0
	fi
	mkdir -p "$d/lib" "$d/log" "$FERRY_STATE/ns/client-$kind"
	chmod 711 "$d/lib"
	ip netns add "ferry-$name" 2>/dev/null || ip netns list | grep -qw "ferry-$name" ||
		ddie "$name: cannot create network namespace ferry-$name"
	ip -n "ferry-$name" link set lo up
	case $kind in
	lxd) lib=/var/lib/lxd log=/var/log/lxd run=/run/lxd daemon="lxd --group lxd" ;;
	incus) lib=/var/lib/incus log=/var/log/incus run=/run/incus daemon="/usr/libexec/incus/incusd --group incus-admin" ;;
	esac
	mkdir -p "$lib" "$log" "$run"
	# The script takes data as arguments only: $1 lib, $2 log, $3 run, $4 our lib,
	# $5 our log, $6 PATH, $7 idmapped setting, then the daemon's argv.
	# nsenter, not `ip netns exec`: that one remounts /sys and hides the
	# cgroup hierarchies (liblxc then cannot freeze: "Failed to find
	# hierarchy for controller freezer").
	# shellcheck disable=SC2016
	nsenter --net="/run/netns/ferry-$name" -- unshare --mount --propagation private -- /bin/sh -c '
		set -e
		umount -l "$1/shmounts" 2>/dev/null || true
		umount -l "$1/guestapi" 2>/dev/null || true
		umount -l "$1/devlxd" 2>/dev/null || true
		mount --bind "$4" "$1"
		mount --bind "$5" "$2"
		mount -t tmpfs -o mode=0755 tmpfs "$3"
		mount --make-rshared /
		lib=$1 log=$2 path=$6 idmap=$7
		shift 7
		cd /
		exec env -i PATH="$path" HOME=/root LANG=C.UTF-8 "$idmap" setsid "$@" --logfile "$log/daemon.log"
	' sh "$lib" "$log" "$run" "$d/lib" "$d/log" "$DAEMON_PATH:/usr/libexec/incus" \
		INCUS_IDMAPPED_MOUNTS_DISABLE=1 $daemon </dev/null >>"$d/log/daemon.out" 2>&1 &
	echo $! >"$d/pid"
	for i in $(seq 1 300); do
		ns_cli "$kind" "$name" info >/dev/null 2>&1 && break
		kill -0 "$(cat "$d/pid")" 2>/dev/null || ddie "$kind@$name: daemon exited (see $d/log/daemon.out)"
		sleep 0.2
	done
	ns_cli "$kind" "$name" info >/dev/null 2>&1 || ddie "$kind@$name: did not become ready"
	ip -n "ferry-$name" addr add "$addr" dev lo 2>/dev/null || true
	dlog "$kind@$name: started in $((SECONDS - t0)) s"
	ns_setup "$kind" "$name" "${addr%/*}"
}

ns_setup() {
	local kind=$1 name=$2 ip=$3
	if ! ns_cli "$kind" "$name" storage show default >/dev/null 2>&1; then
		printf 'config:\n  core.https_address: "%s:8443"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n' "$ip" |
			case $kind in
			lxd) nsenter --net="/run/netns/ferry-$name" -- env $(ns_env lxd "$name") lxd init --preseed ;;
			incus) nsenter --net="/run/netns/ferry-$name" -- env $(ns_env incus "$name") incus admin init --preseed ;;
			esac
	fi
	if ! ns_cli "$kind" "$name" image info "$BUSYBOX_ALIAS" >/dev/null 2>&1; then
		build_image "$FERRY_STATE/image"
		dquiet ns_cli "$kind" "$name" image import "$FERRY_STATE/image/metadata.tar.gz" \
			"$FERRY_STATE/image/rootfs.tar.gz" --alias "$BUSYBOX_ALIAS" || ddie "$kind@$name: image import failed"
	fi
}

# ns_link A B: a veth pair between the two namespaces; each side gets the
# other's /32 route through it (the addresses live on each namespace's lo).
ns_link() {
	local a=$1 b=$2 va vb ipa ipb
	va="fv-$a"
	vb="fv-$b"
	va=${va:0:15}
	vb=${vb:0:15}
	if ! ip -n "ferry-$a" link show "$va" >/dev/null 2>&1; then
		ip link add "$va" netns "ferry-$a" type veth peer name "$vb" netns "ferry-$b"
	fi
	ip -n "ferry-$a" link set "$va" up
	ip -n "ferry-$b" link set "$vb" up
	ipa=$(ip -n "ferry-$a" -4 -o addr show dev lo | awk '$4 !~ /^127\./ { sub(/\/.*/, "", $4); print $4; exit }')
	ipb=$(ip -n "ferry-$b" -4 -o addr show dev lo | awk '$4 !~ /^127\./ { sub(/\/.*/, "", $4); print $4; exit }')
	[ -n "$ipa" ] && [ -n "$ipb" ] || ddie "ns-link: both namespaces need an address (ns-start first)"
	ip -n "ferry-$a" route replace "$ipb/32" dev "$va"
	ip -n "ferry-$b" route replace "$ipa/32" dev "$vb"
}

ns_stop() {
	local kind=$1 name=$2 d pid i
	d=$(ns_dir "$name")
	if [ -s "$d/pid" ]; then
		pid=$(cat "$d/pid")
		case $kind in
		lxd) timeout 60 nsenter --net="/run/netns/ferry-$name" -- env $(ns_env lxd "$name") lxd shutdown >/dev/null 2>&1 || true ;;
		incus) timeout 60 nsenter --net="/run/netns/ferry-$name" -- env $(ns_env incus "$name") incus admin shutdown >/dev/null 2>&1 || true ;;
		esac
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	# Whatever still runs in the namespace (a container monitor the
	# daemon left behind) was started there by us: end it.
	for pid in $(ip netns pids "ferry-$name" 2>/dev/null); do
		kill -9 "$pid" 2>/dev/null || true
	done
	ip netns del "ferry-$name" 2>/dev/null || true
	rm -rf "$d"
	dlog "$kind@$name: stopped and removed"
}

names() {
	case ${1:-all} in
	all) echo lxd incus ;;
	lxd | incus) echo "$1" ;;
	*) ddie "unknown daemon: $1 (lxd, incus or all)" ;;
	esac
}

daemons_main() {
	local cmd=${1:-} n rc=0
	case $cmd in
	ns-*) ;;
	*) [ $# -le 2 ] || ddie "usage: $0 install|start|stop|status [lxd|incus|all]" ;;
	esac
	[ "$(id -u)" = 0 ] || ddie "must run as root"
	case $cmd in
	install) for n in $(names "${2:-all}"); do "install_$n"; done ;;
	start) for n in $(names "${2:-all}"); do start_daemon "$n"; done ;;
	stop) for n in $(names "${2:-all}"); do stop_daemon "$n"; done ;;
	status)
		for n in $(names "${2:-all}"); do
			if answers "$n"; then echo "$n: running"; else echo "$n: not running"; rc=1; fi
		done
		return $rc
		;;
	ns-start) [ $# -eq 4 ] || ddie "usage: $0 ns-start lxd|incus NAME ADDR/PREFIX"; ns_start "$2" "$3" "$4" ;;
	ns-stop) ns_stop "$2" "$3" ;;
	ns-link) ns_link "$2" "$3" ;;
	ns-env) ns_env "$2" "$3" ;;
	-h | --help | "") sed -n '2,14s/^# \{0,1\}//p' "$0" ;;
	*) ddie "unknown command: $cmd" ;;
	esac
}

# Run only when executed, not when sourced by install-deps.sh.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	daemons_main "$@"
fi
