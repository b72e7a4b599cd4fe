package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// WrapperDir is the directory of a TEST-ONLY CRIU wrapper (named criu, put
// first on both daemons' PATH) with two work-arounds, each acting only in
// the situation it is for.
//
// First, liblxc 5.0.2 (Debian 12's LXD 5.0.2) and containers without a
// console. liblxc 5.0.2 stats /dev/console inside the container before
// every dump (save_tty_major_minor) even with lxc.console.path = none, and
// fails the dump when it is absent ("stat of /proc/N/root/dev/console
// failed"); the NoConsole configuration's autodev hook puts a placeholder
// FILE there, so the stat succeeds. liblxc then writes tty.info
// ("tty[0:NN]": rdev 0, not a device) into the images directory, and on
// restore refuses any tty.info when the container has no console
// ("lxc.console.path configured on source host but not target"). The
// wrapper deletes a tty.info whose rdev is 0 before CRIU dumps; with a real
// console (stock configuration) it changes nothing.
//
// Second, Incus 6.0.4 restores from a state directory that is mode 0700
// root; the restored init, already root of the container's user namespace
// (uid 100000 on the host), opens timens-0.img in it and sometimes fails
// ("Unable to open timens-0.img: Permission denied", about one restore in
// four here). The wrapper makes the images directory searchable (o+x; the
// image files are 0644) before a restore. The images then become readable
// by every user of the host: acceptable on a test machine only.
const WrapperDir = "/run/ferry-test/criu-wrapper-TEST-ONLY-lxd502-tty-info-and-searchable-images"

const wrapperScript = `#!/bin/sh
# TEST-ONLY CRIU wrapper, written by internal/daemontest (see WrapperDir):
# 1. dump: drops the tty.info liblxc 5.0.2 wrote for a placeholder
#    /dev/console (rdev 0), so that the restore does not ask for a console;
# 2. restore: makes the images directory searchable so that the restored
#    init (container root, host uid 100000) can open timens-0.img.
dir=
prev=
for a in "$@"; do
	case $prev in -D | --images-dir) dir=$a ;; esac
	case $a in --images-dir=*) dir=${a#--images-dir=} ;; esac
	prev=$a
done
if [ "$1" = dump ] && [ -n "$dir" ] && grep -q '^tty\[0:[0-9a-f]*\]' "$dir/tty.info" 2>/dev/null; then
	rm -f "$dir/tty.info"
fi
if [ "$1" = restore ] && [ -n "$dir" ] && [ -d "$dir" ]; then
	chmod o+x "$dir"
fi
exec %s "$@"
`

// writeWrapper writes the wrapper around the CRIU found on PATH (outside
// the wrapper's own directory) and returns its directory.
func writeWrapper() (string, error) {
	real, err := realCRIU()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(WrapperDir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(WrapperDir, "criu")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(wrapperScript, real)), 0o755); err != nil {
		return "", err
	}
	return WrapperDir, os.Rename(tmp, p)
}

func realCRIU() (string, error) {
	for _, p := range []string{os.Getenv("FERRY_CRIU"), "/usr/local/sbin/criu"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("criu")
	if err != nil {
		return "", fmt.Errorf("no criu to wrap: %w", err)
	}
	return p, nil
}
