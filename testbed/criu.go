package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// MoveResult is what a raw CRIU round trip did and how long each step took.
type MoveResult struct {
	Name   string `json:"name"`
	From   string `json:"from"`
	To     string `json:"to"`
	Images string `json:"images"`
	// DumpLog and RestoreLog are CRIU's -v4 logs.
	DumpLog    string        `json:"dump_log"`
	RestoreLog string        `json:"restore_log"`
	Dump       time.Duration `json:"dump_ns"`
	Copy       time.Duration `json:"copy_ns"`
	Restore    time.Duration `json:"restore_ns"`
	Pid        int           `json:"pid"`
	// NftTables are the tables CRIU's network lock left, deleted.
	NftTables []string `json:"nft_tables"`
	// FellBack is true when the restore on the target failed and the
	// workload was restored on its source host instead.
	FellBack bool `json:"fell_back"`
}

// MoveRaw moves a workload to another testbed host with plain CRIU
// commands, the way that worked on this machine (see doc.go): `criu dump`
// in the source host's network namespace, its rootfs copied to the target
// host, `criu restore -d` in the target's namespace under a supervisor that
// reaps the restored tree. CRIU's leftover nftables tables are deleted.
// When the restore fails, the workload is restored on its source (from the
// same images and its untouched rootfs), so it is not lost; the error then
// says so and carries CRIU's Error lines.
func (tb *Testbed) MoveRaw(ctx context.Context, name, to string) (*MoveResult, error) {
	if tb.CRIU == "" {
		info, err := criubin.Find(ctx, tb.Local, "")
		if err != nil {
			return nil, err
		}
		tb.CRIU = info.Path
	}
	st, unlock, err := tb.lockUp()
	if err != nil {
		return nil, err
	}
	defer unlock()
	w := st.workload(name)
	if w == nil {
		return nil, fmt.Errorf("%w: %q", errNoSuchWorkload, name)
	}
	src, dst := st.host(w.Host), st.host(to)
	if dst == nil {
		return nil, usagef("no testbed host %q", to)
	}
	if dst.Name == src.Name {
		return nil, usagef("%s already runs on %s", name, to)
	}
	if !alive(w.Pid, w.StartTime) {
		return nil, fmt.Errorf("workload %s (pid %d) is not running", name, w.Pid)
	}
	imgs := filepath.Join(tb.Dir, "images", fmt.Sprintf("%s-%d-%s", name, w.Moves+1, time.Now().UTC().Format("150405.000")))
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		return nil, err
	}
	res := &MoveResult{Name: name, From: src.Name, To: dst.Name, Images: imgs,
		DumpLog: filepath.Join(imgs, "dump.log"), RestoreLog: filepath.Join(imgs, "restore.log")}

	srcHost := tb.Host(src.Name)
	start := time.Now()
	_, err = srcHost.Run(ctx, []string{tb.CRIU, "dump", "-t", strconv.Itoa(w.Pid), "-D", imgs,
		"-o", res.DumpLog, "-v4", "--network-lock", "nftables", "--tcp-established"},
		host.RunOptions{Timeout: 5 * time.Minute})
	res.Dump = time.Since(start)
	tables, terr := deleteCRIUTables(ctx, srcHost)
	res.NftTables = append(res.NftTables, tables...)
	if terr != nil && err == nil {
		err = terr
	}
	if err != nil {
		return res, &CRIUError{Step: "dump", Log: res.DumpLog, Lines: LogErrors(res.DumpLog), Err: err}
	}
	// CRIU killed the tree; the supervisor reaps it.
	waitGone([]int{w.Pid}, 5*time.Second)
	// The last status before the dump: the restored workload must go on
	// from there, whether or not anyone verified it before.
	if s, err := zoo.ReadStatus(filepath.Join(w.Rootfs, zoo.StatusFile)); err == nil && w.Zoo != "" && s.OK && s.Counter > w.Counter {
		w.Counter = s.Counter
	}

	start = time.Now()
	dstRoot := filepath.Join(dst.Root, "rootfs", name)
	if _, err := os.Lstat(dstRoot); err == nil {
		return res, tb.fallBack(ctx, st, w, src, res, fmt.Errorf("%s already has a rootfs %s", dst.Name, dstRoot))
	}
	if err := run(ctx, tb.Local, "cp", "-a", w.Rootfs, dstRoot); err != nil {
		os.RemoveAll(dstRoot)
		return res, tb.fallBack(ctx, st, w, src, res, fmt.Errorf("copy rootfs to %s: %w", dst.Name, err))
	}
	res.Copy = time.Since(start)

	start = time.Now()
	lr, err := tb.restore(ctx, st, w, dst, dstRoot, imgs, res.RestoreLog, &res.NftTables)
	res.Restore = time.Since(start)
	if err != nil {
		os.RemoveAll(dstRoot)
		err = &CRIUError{Step: "restore on " + dst.Name, Log: res.RestoreLog, Lines: LogErrors(res.RestoreLog), Err: err}
		return res, tb.fallBack(ctx, st, w, src, res, err)
	}
	os.RemoveAll(w.Rootfs)
	w.Host, w.Rootfs, w.Pid, w.StartTime, w.Supervisor = dst.Name, dstRoot, lr.Pid, lr.StartTime, lr.Supervisor
	w.Moves++
	res.Pid = lr.Pid
	if err := tb.save(st); err != nil {
		return res, err
	}
	return res, tb.route(ctx, st, w)
}

// restore runs CRIU's restore of w from imgs on h, rooted at root.
func (tb *Testbed) restore(ctx context.Context, st *State, w *Workload, h *HostState, root, imgs, log string, nft *[]string) (*launchResult, error) {
	pidfile := filepath.Join(imgs, "restore-"+h.Name+".pid")
	argv := []string{tb.CRIU, "restore", "-D", imgs, "-o", log, "-v4", "--root", root,
		"-d", "--pidfile", pidfile, "--tcp-established", "--network-lock", "nftables"}
	if w.Net == NetOwn {
		// The workload's eth0 gets a new peer in the target host.
		argv = append(argv, "--external", "veth[eth0]:"+w.Veth)
	}
	spec := &launchSpec{
		Mode: "restore", Name: w.Name, Rootfs: root, NewNet: w.Net == NetOwn, Veth: w.Veth, Addr: w.Addr,
		Marker: MarkerEnv + "=" + st.ID, RestoreArgv: argv, PidFile: pidfile,
	}
	hh := tb.Host(h.Name)
	lr, err := tb.launch(ctx, hh, spec)
	tables, terr := deleteCRIUTables(ctx, hh)
	*nft = append(*nft, tables...)
	if terr != nil && err == nil {
		err = terr
	}
	if err == nil && w.Net == NetOwn {
		// The restored namespace holds the lock's table too.
		inner := &host.Netns{Label: "workload:" + w.Name, Netns: fmt.Sprintf("../../proc/%d/ns/net", lr.Pid)}
		tables, terr := deleteCRIUTables(ctx, inner)
		*nft = append(*nft, tables...)
		if terr != nil {
			err = terr
		}
	}
	return lr, err
}

// fallBack restores w on its source host after a failed move.
func (tb *Testbed) fallBack(ctx context.Context, st *State, w *Workload, src *HostState, res *MoveResult, cause error) error {
	log := filepath.Join(res.Images, "restore-fallback.log")
	lr, err := tb.restore(ctx, st, w, src, w.Rootfs, res.Images, log, &res.NftTables)
	if err != nil {
		st.removeWorkload(w.Name)
		tb.save(st)
		return fmt.Errorf("%w; restoring it on %s failed too, the workload is lost: %v (%s)", cause, src.Name, err, strings.Join(LogErrors(log), " | "))
	}
	w.Pid, w.StartTime, w.Supervisor = lr.Pid, lr.StartTime, lr.Supervisor
	res.FellBack, res.Pid = true, lr.Pid
	if err := tb.save(st); err != nil {
		return errors.Join(cause, err)
	}
	return fmt.Errorf("%w; the workload runs again on %s", cause, src.Name)
}

// CRIUError is a failed CRIU step with the Error lines of its log.
type CRIUError struct {
	Step  string
	Log   string
	Lines []string
	Err   error
}

func (e *CRIUError) Error() string {
	if len(e.Lines) == 0 {
		return fmt.Sprintf("criu %s: %v (log: %s)", e.Step, e.Err, e.Log)
	}
	return fmt.Sprintf("criu %s: %s (log: %s)", e.Step, strings.Join(e.Lines, " | "), e.Log)
}
func (e *CRIUError) Unwrap() error { return e.Err }
func (e *CRIUError) Hint() string  { return "read the whole log: " + e.Log }

// harmless are Error lines every CRIU log on these machines has.
var harmless = []string{
	"Can't setup RLIMIT_NOFILE",
	"Hardware breakpoints",
	"Could not process rule: No such file or directory",
}

// LogErrors returns the Error lines of a CRIU log, without the known
// harmless ones, at most 10 (the first: the rest tend to follow from them).
func LogErrors(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	return logErrors(f)
}

func logErrors(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.Contains(line, "Error") {
			continue
		}
		for _, h := range harmless {
			if strings.Contains(line, h) {
				continue next
			}
		}
		out = append(out, line)
		if len(out) == 10 {
			break
		}
	}
	return out
}
