#!/bin/sh
# Capture the files and command outputs `ferry probe --root` reads into DIR,
# in ferry's captured-host layout: DIR/proc/..., DIR/sys/..., and
# DIR/commands/<name> where <name> is the command line mangled as sos report
# does (program base name, words joined by "_").
#   probe/testdata/capture.sh probe/testdata/hosts/NAME
# /proc/kallsyms is trimmed to its syscall entry points.
set -u
dir=${1:?usage: capture.sh DIR}
mkdir -p "$dir/commands"

copy() { # copy FILE...
	for f in "$@"; do
		[ -r "$f" ] || continue
		mkdir -p "$dir$(dirname "$f")"
		cat "$f" >"$dir$f" 2>/dev/null || rm -f "$dir$f"
	done
}
cmd() { # cmd NAME ARGV...: output of ARGV (stdout then stderr) into commands/NAME
	name=$1; shift
	if command -v "$1" >/dev/null 2>&1; then
		"$@" >"$dir/commands/$name.out" 2>"$dir/commands/$name.err"
		cat "$dir/commands/$name.out" "$dir/commands/$name.err" >"$dir/commands/$name"
		rm -f "$dir/commands/$name.out" "$dir/commands/$name.err"
	else
		# What sos report records for a program that is not installed.
		echo "timeout: failed to run command '$1': No such file or directory" >"$dir/commands/$name"
	fi
}

copy /proc/cpuinfo /proc/filesystems /proc/self/mountinfo /proc/version /proc/cgroups \
	/proc/self/cgroup /proc/1/cgroup /proc/sys/kernel/osrelease /proc/sys/kernel/arch \
	/proc/sys/kernel/hostname /proc/config.gz "/boot/config-$(uname -r)" /sys/kernel/security/lsm \
	/sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name /sys/class/dmi/id/bios_vendor
[ -e /.dockerenv ] && : >"$dir/.dockerenv"
[ -e /run/.containerenv ] && mkdir -p "$dir/run" && : >"$dir/run/.containerenv"
for m in $(awk '$0 ~ / - cgroup2 / {print $5}' /proc/self/mountinfo); do copy "$m/cgroup.controllers"; done
mkdir -p "$dir/proc"
grep -E ' [Tt] (__x64_sys_|__arm64_sys_|sys_)' /proc/kallsyms >"$dir/proc/kallsyms"

cmd getconf_PAGESIZE getconf PAGESIZE
cmd uname_-m uname -m
cmd uname_-a uname -a
cmd criu_--version criu --version
cmd criu_check criu check
for f in $(criu --help 2>&1 | sed -n '/only check a particular feature/,/^$/p' | tail -n +2 | tr -d ' ' | tr ',' '\n'); do
	cmd "criu_check_--feature_$f" criu check --feature "$f"
done
cmd systemd-detect-virt_--container systemd-detect-virt --container
cmd systemd-detect-virt_--vm systemd-detect-virt --vm
cmd iptables-restore_--version iptables-restore --version
cmd nft_--version nft --version
for r in lxd incus podman runc docker; do cmd "${r}_--version" "$r" --version; done
cmd lxc-start_--version lxc-start --version
cmd lxc_query_.1.0 lxc query /1.0
cmd incus_query_.1.0 incus query /1.0
cmd docker_version_--format_.Server.Version docker version --format '{{.Server.Version}}'
criu cpuinfo dump -D "$dir/commands" >/dev/null 2>&1 || rm -f "$dir/commands/cpuinfo.img"
