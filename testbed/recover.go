package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// MoveRecordFile is the file in a run directory that describes a testbed
// move, for `ferry runs recover`.
const MoveRecordFile = "testbed-move.json"

// moveRecord is what a placement must remember to finish or undo its move
// after the ferry that ran it died.
type moveRecord struct {
	Name      string    `json:"name"`
	Mode      string    `json:"mode"`
	Workload  Workload  `json:"workload"`
	Source    HostState `json:"source"`
	Dest      HostState `json:"dest"`
	ImgSrc    string    `json:"images_src"`
	ImgDst    string    `json:"images_dst"`
	DstRoot   string    `json:"dest_rootfs"`
	PsPidFile string    `json:"page_server_pidfile,omitempty"`
}

func (p *Placement) save(runDir string) error {
	b, err := json.MarshalIndent(moveRecord{Name: p.name, Mode: p.mode, Workload: p.w, Source: p.src, Dest: p.dst,
		ImgSrc: p.imgSrc, ImgDst: p.imgDst, DstRoot: p.dstRoot, PsPidFile: p.psPidFile}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(runDir, MoveRecordFile), append(b, '\n'), 0o600)
}

// RecoverMove finishes or undoes the testbed move recorded in runDir whose
// ferry died (SIGKILL, a crash): it waits for the run's CRIU to end, then
// either the workload was already adopted on the target (the stopped
// source is removed: the move is done) or it is brought back on its source
// (continued, or for a stopped tree with TCP connections restored from its
// images) and the target is cleaned. It returns where the workload runs.
func (tb *Testbed) RecoverMove(ctx context.Context, runDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(runDir, MoveRecordFile))
	if err != nil {
		return "", fmt.Errorf("not a testbed move, or it died before preparing the target: %w", err)
	}
	var r moveRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("%s: %w", MoveRecordFile, err)
	}
	if tb.CRIU == "" {
		return "", errors.New("testbed: no CRIU binary set")
	}
	p := &Placement{tb: tb, mode: r.Mode, name: r.Name, w: r.Workload, src: r.Source, dst: r.Dest,
		imgSrc: r.ImgSrc, imgDst: r.ImgDst, dstRoot: r.DstRoot, psPidFile: r.PsPidFile}
	if r.PsPidFile != "" {
		p.ps = &migrate.PageServer{Address: r.Dest.Addr}
	}
	// A CRIU the dead ferry started may still be dumping: it ends when it
	// finds its client gone (the tree resumed) or after the dump (the tree
	// left stopped). Either is fine; acting before it ends is not.
	if left := waitNoCRIU(filepath.Join(host.NetnsDir, r.Source.Netns), 60*time.Second); left > 0 {
		return "", fmt.Errorf("CRIU (pid %d) still runs in %s; try again when it ended", left, r.Source.Name)
	}
	st, err := tb.load()
	if err != nil || st == nil {
		return "", errors.Join(err, errDown())
	}
	cur := st.workload(r.Name)
	if cur == nil {
		return "", fmt.Errorf("workload %s is no longer in the testbed state", r.Name)
	}
	if cur.Host == r.Dest.Name && cur.Pid != r.Workload.Pid && alive(cur.Pid, cur.StartTime) {
		// Restored and adopted: only the commit was missing.
		if alive(r.Workload.Pid, r.Workload.StartTime) {
			if err := p.Commit(ctx, cur.Pid); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("testbed:%s on %s (moved; the stopped source removed)", r.Name, r.Dest.Name), nil
	}
	if !alive(r.Workload.Pid, r.Workload.StartTime) {
		return "", fmt.Errorf("the source tree of %s (pid %d) is gone; its images are in %s", r.Name, r.Workload.Pid, r.ImgSrc)
	}
	how := "running"
	if st := migrate.ProcState(r.Workload.Pid); st == "T" || st == "t" {
		how = "resumed"
		if err := p.Resume(ctx); err != nil {
			return "", err
		}
	} else {
		// CRIU failed the dump and resumed the tree itself; its lock
		// tables may be left when it was cut off.
		_, _ = deleteCRIUTables(ctx, p.SourceHost())
	}
	if err := p.KillTarget(ctx, 0); err != nil {
		return "", err
	}
	os.RemoveAll(r.ImgSrc)
	return fmt.Sprintf("testbed:%s on %s (%s)", r.Name, r.Source.Name, how), nil
}

// waitNoCRIU waits until no criu process runs in the network namespace at
// netnsPath, and returns one still running after d (0 when none).
func waitNoCRIU(netnsPath string, d time.Duration) int {
	ino, err := nsInode(netnsPath)
	if err != nil {
		return 0
	}
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		pid := criuIn(ino)
		if pid == 0 || time.Now().After(deadline) {
			return pid
		}
	}
}

func criuIn(netnsIno uint64) int {
	for _, pid := range migrate.CRIUProcesses() {
		if ino, err := nsInode("/proc/" + strconv.Itoa(pid) + "/ns/net"); err == nil && ino == netnsIno {
			return pid
		}
	}
	return 0
}

// SetHostLink takes a testbed host's link to the switch down or up: the
// cable between it and every other host.
func (tb *Testbed) SetHostLink(ctx context.Context, name string, up bool) error {
	st, err := tb.load()
	if err != nil || st == nil {
		return errors.Join(err, errDown())
	}
	h := st.host(name)
	if h == nil {
		return usagef("no testbed host %q (hosts: %s)", name, strings.Join(st.hostNames(), ", "))
	}
	state := "down"
	if up {
		state = "up"
	}
	sw := &host.Netns{Label: "testbed:switch", Netns: st.Switch}
	return run(ctx, sw, "ip", "link", "set", h.Port, state)
}

// HostRoot is the directory of a testbed host: its workloads' root
// filesystems and the images moved to it (HostRoot/images).
func (tb *Testbed) HostRoot(name string) string { return tb.hostRoot(name) }
