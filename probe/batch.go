package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
)

// Batches: one remote command instead of dozens. Over ssh each command is a
// new session (~85 ms here even on a shared connection) and sshd allows 10
// at a time; through nsenter each is one more process. The scripts are
// constants; every piece of data (the CRIU path, names) is a positional
// parameter, never part of the script text.

// featureScript runs `criu check`, `criu cpuinfo dump` and `criu check
// --feature NAME` for every NAME, in $2 parallel workers, then prints each
// output after a marker line "@@ferry NAME EXITCODE" (NAME is empty for the
// plain check; "=cpuinfo.img" is the image in base64, or the dump's output
// when it failed).
const featureScript = `criu=$1; k=$2; shift 2
d=$(mktemp -d /tmp/ferry-features.XXXXXX) || exit 125
printf '@@ferry-dir %s\n' "$d"
( "$criu" check >"$d/=check" 2>&1; echo $? >"$d/=check.rc" ) &
( mkdir "$d/=img" && "$criu" cpuinfo dump -D "$d/=img" >"$d/=dump" 2>&1; echo $? >"$d/=dump.rc" ) &
j=0
while [ "$j" -lt "$k" ]; do
	(
		i=0
		for f do
			if [ $((i % k)) -eq "$j" ]; then
				"$criu" check --feature "$f" >"$d/$f" 2>&1
				echo $? >"$d/$f.rc"
			fi
			i=$((i + 1))
		done
	) &
	j=$((j + 1))
done
wait
printf '@@ferry %s %s\n' "" "$(cat "$d/=check.rc")"
cat "$d/=check"
rc=$(cat "$d/=dump.rc")
if [ "$rc" = 0 ] && command -v base64 >/dev/null; then
	printf '@@ferry %s %s\n' =cpuinfo.img 0
	base64 <"$d/=img/cpuinfo.img" || printf '\n@@ferry %s %s\n' =cpuinfo.img 1
else
	printf '@@ferry %s %s\n' =cpuinfo.img "$rc"
	cat "$d/=dump"
fi
for f do
	printf '@@ferry %s %s\n' "$f" "$(cat "$d/$f.rc")"
	cat "$d/$f"
done
rm -rf -- "$d"
`

// featureWorkers is how many CRIU checks the batch runs at once. Without
// CRIU's kerndat cache a check spends a third of its time waiting for the
// children it forks, so a few per CPU hide that; measured on 2 cores under
// load, 2 per CPU and 46 at once were both slower than 4.
func featureWorkers(cpus int) int {
	return min(max(4*cpus, 4), 16)
}

const (
	batchMarker    = "@@ferry "
	batchDirMarker = "@@ferry-dir "
)

// removeBatchDir removes the temporary directory a killed batch announced
// on its first line, with a context of its own: the probe's may be done.
func (g *gatherer) removeBatchDir(ctx context.Context, stdout string) {
	first, _, _ := strings.Cut(stdout, "\n")
	dir, ok := strings.CutPrefix(first, batchDirMarker)
	if !ok || !strings.HasPrefix(dir, "/tmp/ferry-features.") || strings.Contains(dir, "..") {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.opt.CommandTimeout)
	defer cancel()
	g.h.Run(cctx, []string{"rm", "-rf", "--", dir}, host.RunOptions{})
}

// runBatch runs script with args through sh on the host and splits its
// output at the marker lines: name -> (output, exit code).
func (g *gatherer) runBatch(ctx context.Context, script string, args ...string) (map[string]output, error) {
	argv := append([]string{"sh", "-c", script, "sh"}, args...)
	// A batch runs many commands: it may take longer than one.
	out, raw, err := g.runOnce(ctx, 3*g.opt.CommandTimeout, argv)
	if err != nil {
		// Killed (timeout, cancel): remove the work directory the
		// script announced, which its own last line would have.
		if raw != nil {
			g.removeBatchDir(ctx, string(raw.Stdout))
		}
		return nil, err
	}
	if out.captured {
		return nil, fmt.Errorf("batch: %w", ErrNotCaptured)
	}
	if out.exitCode != 0 {
		return nil, fmt.Errorf("batch script exited with code %d: %s", out.exitCode, lastLine(out.text))
	}
	res := map[string]output{}
	name, cur, code := "", []string(nil), 0
	started := false
	flush := func() {
		if started {
			res[name] = output{text: strings.Join(cur, "\n"), exitCode: code}
		}
	}
	// stdout only: the shell's own complaints go to stderr.
	for _, line := range strings.Split(out.stdout, "\n") {
		if strings.HasPrefix(line, batchDirMarker) {
			continue
		}
		rest, ok := strings.CutPrefix(line, batchMarker)
		if !ok {
			cur = append(cur, line)
			continue
		}
		flush()
		// "NAME CODE"; the plain check's NAME is empty.
		cur, started = nil, true
		i := strings.LastIndexByte(rest, ' ')
		name = rest[:max(i, 0)]
		var err error
		if code, err = strconv.Atoi(rest[i+1:]); err != nil {
			code = -1
		}
	}
	flush()
	if len(res) == 0 {
		return nil, errors.New("batch script printed no results")
	}
	return res, nil
}

// programScript prints where each program is, on PATH and in the sbin
// directories a non-root PATH lacks: "@@ferry NAME 0" and the path, or
// "@@ferry NAME 1" when it is missing.
const programScript = `PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin
for p do
	if w=$(command -v "$p") && [ "${w#/}" != "$w" ]; then
		printf '@@ferry %s 0\n%s\n' "$p" "$w"
	else
		printf '@@ferry %s 1\n' "$p"
	fi
done
`

// batchedPrograms are the programs the probe looks for.
func batchedPrograms() []string {
	names := []string{"iptables-restore", "nft"}
	for _, rp := range runtimeProbes {
		names = append(names, rp.version[0])
	}
	return names
}

// findPrograms learns in one command where the probe's programs are, on
// hosts that can run commands but have no local PATH (ssh).
func (g *gatherer) findPrograms(ctx context.Context) {
	if _, ok := localPathFinder(g.h); ok {
		return
	}
	if _, ok := g.h.(*host.Dir); ok {
		return
	}
	res, err := g.runBatch(ctx, programScript, batchedPrograms()...)
	if err != nil {
		return // lookProgram falls back to running each program
	}
	g.programs = map[string]string{}
	for name, out := range res {
		if out.exitCode == 0 {
			g.programs[name] = strings.TrimSpace(out.text)
		} else {
			g.programs[name] = ""
		}
	}
}

// fileScript prints files in base64 after "@@ferry PATH 0", or
// "@@ferry PATH 2" for a missing file and "@@ferry PATH 13" for an
// unreadable one.
const fileScript = `command -v base64 >/dev/null || exit 125
for f do
	if [ ! -e "$f" ]; then
		printf '@@ferry %s 2\n' "$f"
	elif b=$( { base64 <"$f"; } 2>/dev/null); then
		printf '@@ferry %s 0\n%s\n' "$f" "$b"
	else
		printf '@@ferry %s 13\n' "$f"
	fi
done
`

// prefetchFiles are the small files every probe reads.
var prefetchFiles = []string{
	"/proc/version", "/proc/cpuinfo", "/proc/config.gz", "/proc/filesystems", "/proc/self/mountinfo",
	"/proc/sys/kernel/osrelease", "/proc/sys/kernel/arch", "/proc/sys/kernel/hostname",
	"/proc/1/environ", "/proc/1/cgroup", "/sys/kernel/security/lsm",
	"/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name", "/sys/class/dmi/id/bios_vendor",
	"/.dockerenv", "/run/.containerenv", kerndatCacheFile, kerndatCacheTmp,
}

type fileResult struct {
	data []byte
	err  error
}

// prefetch reads prefetchFiles in one command on hosts whose files are
// not local (ssh); g.read and g.exists then answer from memory.
func (g *gatherer) prefetch(ctx context.Context) {
	switch g.h.(type) {
	case host.Local, *host.Local, *host.Netns, *host.Dir:
		return
	}
	res, err := g.runBatch(ctx, fileScript, prefetchFiles...)
	if err != nil {
		return // each file is read on its own
	}
	files := map[string]fileResult{}
	for name, out := range res {
		switch out.exitCode {
		case 0:
			b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(out.text), ""))
			if err != nil {
				continue
			}
			files[name] = fileResult{data: b}
		case 2:
			files[name] = fileResult{err: fmt.Errorf("%s: open %s: %w", g.h.Name(), name, fs.ErrNotExist)}
		case 13:
			files[name] = fileResult{err: fmt.Errorf("%s: open %s: %w", g.h.Name(), name, fs.ErrPermission)}
		}
	}
	g.files = files
}
