// Package criu is the native CRIU driver: it checkpoints and restores
// process trees through go-criu's swrk RPC, in the calling process, on the
// local machine. Remote and namespaced hosts run it through `ferry agent`.
package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gocriu "github.com/checkpoint-restore/go-criu/v8"
	"github.com/checkpoint-restore/go-criu/v8/rpc"

	"github.com/ferry-migrate/ferry/migrate"
)

// Log file names, one per operation, as CRIU's own tools name them.
const (
	DumpLog    = "dump.log"
	RestoreLog = "restore.log"
)

// Driver runs CRIU on this machine.
type Driver struct {
	// Path is the CRIU binary (a wrapper that execs criu works).
	Path string
	// Lift picks the lines of a CRIU log that explain a failure, root
	// cause first. Nil lifts nothing.
	Lift func(log string) []string
}

var (
	_ migrate.Driver      = (*Driver)(nil)
	_ migrate.Preflighter = (*Driver)(nil)
)

func (d *Driver) Name() string { return "criu" }

func (d *Driver) client() *gocriu.Criu {
	c := gocriu.MakeCriu()
	if d.Path != "" {
		c.SetCriuPath(d.Path)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func lockMethod(s string) (*rpc.CriuNetworkLockMethod, error) {
	switch s {
	case "", "nftables":
		return rpc.CriuNetworkLockMethod_NFTABLES.Enum(), nil
	case "iptables":
		return rpc.CriuNetworkLockMethod_IPTABLES.Enum(), nil
	case "skip":
		return rpc.CriuNetworkLockMethod_SKIP.Enum(), nil
	}
	return nil, fmt.Errorf("unknown network lock %q (want nftables, iptables or skip)", s)
}

// opened holds the directories CRIU reads through /proc/<ferry>/fd/N.
type opened struct{ images, work *os.File }

func openDirs(images, work string, create bool) (*opened, error) {
	if create {
		if err := os.MkdirAll(images, 0o700); err != nil {
			return nil, fmt.Errorf("images directory: %w", err)
		}
	}
	if work == "" {
		work = images
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	i, err := os.Open(images)
	if err != nil {
		return nil, fmt.Errorf("images directory: %w", err)
	}
	w, err := os.Open(work)
	if err != nil {
		i.Close()
		return nil, fmt.Errorf("log directory: %w", err)
	}
	return &opened{i, w}, nil
}

func (o *opened) close() { o.images.Close(); o.work.Close() }

func (d *Driver) baseOpts(o *opened, log string, lock string, tcp, shell bool, ext []string) (*rpc.CriuOpts, error) {
	lm, err := lockMethod(lock)
	if err != nil {
		return nil, err
	}
	return &rpc.CriuOpts{
		ImagesDirFd:    ptr(int32(o.images.Fd())),
		WorkDirFd:      ptr(int32(o.work.Fd())),
		LogFile:        ptr(log),
		LogLevel:       ptr(int32(4)),
		TcpEstablished: ptr(tcp),
		ShellJob:       ptr(shell),
		NetworkLock:    lm,
		External:       ext,
		FileLocks:      ptr(true),
	}, nil
}

// Checkpoint dumps the tree rooted at req.Target.PID.
func (d *Driver) Checkpoint(ctx context.Context, req migrate.CheckpointRequest) (*migrate.CheckpointResult, error) {
	if err := d.PreflightCheckpoint(ctx, req); err != nil {
		return nil, err
	}
	o, err := openDirs(req.ImagesDir, req.LogDir, true)
	if err != nil {
		return nil, err
	}
	defer o.close()
	opts, err := d.baseOpts(o, DumpLog, req.NetworkLock, req.TCPEstablished, req.ShellJob, req.External)
	if err != nil {
		return nil, err
	}
	opts.Pid = ptr(int32(req.Target.PID))
	opts.LeaveRunning = ptr(req.LeaveRunning)
	if req.LeaveStopped {
		opts.LeaveStopped = ptr(true)
	}
	if ps := req.PageServer; ps != nil {
		opts.Ps = &rpc.CriuPageServerInfo{Address: ptr(ps.Address), Port: ptr(int32(ps.Port))}
	}
	res := &migrate.CheckpointResult{Log: filepath.Join(o.work.Name(), DumpLog)}
	n := &notify{}
	// CRIU must not be interrupted between freezing and resuming the tree:
	// the dump runs to its end and the caller rolls back afterwards.
	err = d.client().Dump(opts, n)
	res.Frozen = n.locked
	if err != nil {
		return res, d.failure("dump", res.Log, err)
	}
	// Over RPC, CRIU writes its stats files into the work directory.
	if err := DumpStats(o.work.Name(), &res.Stats); err != nil {
		return res, err
	}
	res.Stats.ImageBytes = ImageBytes(req.ImagesDir)
	return res, ctx.Err()
}

// PreflightCheckpoint refuses targets CRIU cannot dump as a tree root.
func (d *Driver) PreflightCheckpoint(_ context.Context, req migrate.CheckpointRequest) error {
	if req.Target.Kind != migrate.KindPID {
		return fmt.Errorf("the criu driver checkpoints pid:N targets, not %s", req.Target)
	}
	return CheckTree(req.Target.PID, req.ShellJob)
}

// Restore restores the tree in req.ImagesDir, detached.
func (d *Driver) Restore(ctx context.Context, req migrate.RestoreRequest) (*migrate.RestoreResult, error) {
	if _, err := os.Stat(filepath.Join(req.ImagesDir, "inventory.img")); err != nil {
		return nil, &NoImagesError{Dir: req.ImagesDir, Err: err}
	}
	o, err := openDirs(req.ImagesDir, req.LogDir, false)
	if err != nil {
		return nil, err
	}
	defer o.close()
	opts, err := d.baseOpts(o, RestoreLog, req.NetworkLock, req.TCPEstablished, req.ShellJob, req.External)
	if err != nil {
		return nil, err
	}
	if req.Root != "" {
		opts.Root = ptr(req.Root)
	}
	// Detached: the restored tree is reparented when CRIU exits. ferry's
	// testbed restores under its own subreaper.
	opts.RstSibling = ptr(false)
	res := &migrate.RestoreResult{Log: filepath.Join(o.work.Name(), RestoreLog)}
	if res.Fixups, err = FixExpiredTimerfds(req.ImagesDir); err != nil {
		return res, fmt.Errorf("prepare the images: %w", err)
	}
	n := &notify{}
	if err := d.client().Restore(opts, n); err != nil {
		return res, d.failure("restore", res.Log, err)
	}
	res.PID = int(n.restoredPID)
	if err := RestoreStats(o.work.Name(), &res.Stats); err != nil {
		return res, err
	}
	return res, ctx.Err()
}

func (d *Driver) failure(op, log string, err error) error {
	f := &migrate.Failure{Op: op, Log: log, Err: err}
	if d.Lift != nil {
		if b, rerr := os.ReadFile(log); rerr == nil {
			f.Lifted = d.Lift(string(b))
		}
	}
	return f
}

// NoImagesError is a restore from a directory without CRIU images.
type NoImagesError struct {
	Dir string
	Err error
}

func (e *NoImagesError) Error() string {
	return fmt.Sprintf("%s holds no CRIU images (no inventory.img)", e.Dir)
}
func (e *NoImagesError) Unwrap() error { return e.Err }
func (e *NoImagesError) Hint() string {
	return "pass the --dir that `ferry checkpoint` wrote, or list runs with `ferry runs`"
}

// notify records CRIU's notifications: when the tree was frozen (the
// network is locked right before) and the restored pid.
type notify struct {
	gocriu.NoNotify
	locked      time.Time
	restoredPID int32
}

func (n *notify) NetworkLock() error          { n.locked = time.Now(); return nil }
func (n *notify) PostRestore(pid int32) error { n.restoredPID = pid; return nil }

// TreeError says why a pid cannot be dumped as the root of a tree.
type TreeError struct {
	PID    int
	Reason string
	Fix    string
}

func (e *TreeError) Error() string { return fmt.Sprintf("pid %d: %s", e.PID, e.Reason) }
func (e *TreeError) Hint() string  { return e.Fix }

// ErrNoProcess is wrapped by a TreeError for a pid that does not exist.
var ErrNoProcess = errors.New("no such process")

// CheckTree refuses pids CRIU cannot dump as a tree root: missing
// processes, threads, ferry itself, and (unless shellJob) processes whose
// session or process group leader lives outside the tree.
func CheckTree(pid int, shellJob bool) error {
	st, err := readStat(pid)
	if err != nil {
		return &TreeError{PID: pid, Reason: "no such process", Fix: "check the pid with `ps -p " + fmt.Sprint(pid) + "`"}
	}
	if tgid := readTgid(pid); tgid != 0 && tgid != pid {
		return &TreeError{PID: pid, Reason: fmt.Sprintf("is a thread of process %d", tgid), Fix: fmt.Sprintf("checkpoint the process: pid:%d", tgid)}
	}
	if pid == 1 || pid == os.Getpid() {
		return &TreeError{PID: pid, Reason: "cannot checkpoint init or ferry itself", Fix: "name the root of the workload's process tree"}
	}
	if shellJob {
		return nil
	}
	for _, leader := range []struct {
		what string
		id   int
	}{{"session", st.sid}, {"process group", st.pgid}} {
		if leader.id == pid || leader.id == 0 {
			continue
		}
		if !isDescendant(leader.id, pid) {
			return &TreeError{PID: pid, Reason: fmt.Sprintf("is not the root of its process tree: its %s leader %d is outside it", leader.what, leader.id),
				Fix: fmt.Sprintf("checkpoint the tree's root instead, start the workload with setsid, or pass --shell-job if %d is a shell", leader.id)}
		}
	}
	return nil
}

type stat struct{ ppid, pgid, sid int }

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name is in parentheses and may contain anything.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	var state string
	var st stat
	_, err = fmt.Sscan(s[i+1:], &state, &st.ppid, &st.pgid, &st.sid)
	return st, err
}

func readTgid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// isDescendant reports whether p is root or below root.
func isDescendant(p, root int) bool {
	for i := 0; i < 4096 && p > 1; i++ {
		if p == root {
			return true
		}
		st, err := readStat(p)
		if err != nil {
			return false
		}
		p = st.ppid
	}
	return p == root
}
