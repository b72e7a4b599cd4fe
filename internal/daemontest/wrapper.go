package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// WrapperLXD502TTYInfo is the directory of a TEST-ONLY CRIU wrapper (named
// criu, put first on LXD's PATH) that works around liblxc 5.0.2 (Debian 12's
// LXD 5.0.2) for containers without a console:
//
//   - liblxc 5.0.2 stats /dev/console inside the container before every dump
//     (save_tty_major_minor) even with lxc.console.path = none, and fails the
//     dump when it is absent ("stat of /proc/N/root/dev/console failed").
//     The NoConsole configuration's autodev hook puts a placeholder FILE
//     there, so the stat succeeds;
//   - liblxc then writes tty.info ("tty[0:NN]": rdev 0, not a device) into
//     the images directory, and on restore refuses any tty.info when the
//     container has no console ("lxc.console.path configured on source host
//     but not target"). This wrapper deletes a tty.info whose rdev is 0
//     before CRIU dumps, and passes everything else through unchanged: with
//     a real console (stock configuration) it changes nothing.
//
// Incus 6.0.4 does not need it.
const WrapperLXD502TTYInfo = "/run/ferry-test/criu-wrapper-lxd502-drop-placeholder-tty-info"

const wrapperScript = `#!/bin/sh
# TEST-ONLY CRIU wrapper for liblxc 5.0.2 (LXD 5.0.2) containers with
# lxc.console.path = none: drops the tty.info liblxc wrote for a placeholder
# /dev/console (rdev 0) before the dump, so that the restore does not ask for
# a console. Written by internal/daemontest; see WrapperLXD502TTYInfo.
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
exec %s "$@"
`

// writeWrapper writes the wrapper around the CRIU found on PATH (outside
// the wrapper's own directory) and returns its directory.
func writeWrapper() (string, error) {
	real, err := realCRIU()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(WrapperLXD502TTYInfo, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(WrapperLXD502TTYInfo, "criu")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(wrapperScript, real)), 0o755); err != nil {
		return "", err
	}
	return WrapperLXD502TTYInfo, os.Rename(tmp, p)
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
