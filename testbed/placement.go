package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// Placement moves one testbed workload to another testbed host under
// ferry's migrate engine (it implements migrate.Placement): the engine
// dumps it with CRIU in the source host's namespace and leaves it stopped;
// the placement copies its rootfs and images, restores it through go-criu
// under a reaping supervisor in the target's namespace, moves its address,
// and on failure brings the source back.
type Placement struct {
	tb   *Testbed
	mode string
	// Lift picks the lines of a CRIU log that explain a failure.
	Lift func(string) []string
	// KeepImages keeps the images after a successful move (for ferry
	// inspect); by default Commit removes them.
	KeepImages bool

	name     string
	w        Workload // the workload as it was on the source
	src, dst HostState
	// imgSrc is where the dump writes, imgDst where the target reads.
	imgSrc, imgDst, dstRoot string
	ps                      *migrate.PageServer
	psPidFile               string
	transferred, moved      bool
}

var (
	_ migrate.Placement = (*Placement)(nil)
	_ migrate.Guard     = (*Placement)(nil)
)

// Placement prepares the move of workload name to host to in mode
// (migrate.ModeStopCopy or migrate.ModePageServer). It checks what can be
// checked without touching anything.
func (tb *Testbed) Placement(ctx context.Context, name, to, mode string) (*Placement, error) {
	if tb.CRIU == "" {
		return nil, errors.New("testbed: no CRIU binary set")
	}
	var p *Placement
	err := tb.withState(func(st *State) error {
		w := st.workload(name)
		if w == nil {
			return withHint(fmt.Errorf("%w: %q", errNoSuchWorkload, name), "list them with `ferry testbed ps`")
		}
		src, dst := st.host(w.Host), st.host(to)
		if dst == nil {
			return usagef("no testbed host %q (hosts: %s)", to, strings.Join(st.hostNames(), ", "))
		}
		if dst.Name == src.Name {
			return usagef("%s already runs on %s", name, to)
		}
		if !alive(w.Pid, w.StartTime) {
			return withHint(fmt.Errorf("workload %s (pid %d) is not running", name, w.Pid), "see `ferry testbed ps`; a lost run can be inspected with `ferry runs`")
		}
		stamp := time.Now().UTC().Format("20060102T150405.000")
		dir := fmt.Sprintf("%s-%d-%s", name, w.Moves+1, stamp)
		// The dump writes on the source's side, the target reads from
		// its own: a full disk on the target shows where it would.
		p = &Placement{tb: tb, mode: mode, name: name, w: *w, src: *src, dst: *dst,
			imgSrc: filepath.Join(tb.Dir, "images", dir), imgDst: filepath.Join(dst.Root, "images", dir),
			dstRoot: filepath.Join(dst.Root, "rootfs", name)}
		if _, err := os.Lstat(p.dstRoot); err == nil {
			return fmt.Errorf("%s already has a rootfs %s", dst.Name, p.dstRoot)
		}
		return nil
	})
	return p, err
}

// SourceHost and DestHost are where CRIU must run.
func (p *Placement) SourceHost() host.Host { return p.tb.Host(p.src.Name) }
func (p *Placement) DestHost() host.Host   { return p.tb.Host(p.dst.Name) }

// withState runs f on the loaded state under the lock and saves it.
func (tb *Testbed) withState(f func(*State) error) error {
	st, unlock, err := tb.lockUp()
	if err != nil {
		return err
	}
	defer unlock()
	if err := f(st); err != nil {
		return err
	}
	return tb.save(st)
}

func (p *Placement) Checkpoint() migrate.CheckpointRequest {
	return migrate.CheckpointRequest{
		Target: migrate.Target{Kind: migrate.KindPID, PID: p.w.Pid}, ImagesDir: p.imgSrc,
		TCPEstablished: true, NetworkLock: "nftables", PageServer: p.ps,
	}
}

func (p *Placement) Prepare(ctx context.Context, runDir string) (migrate.RestoreRequest, error) {
	for _, d := range []string{p.imgSrc, p.imgDst} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return migrate.RestoreRequest{}, err
		}
	}
	if p.mode == migrate.ModePageServer {
		p.psPidFile = filepath.Join(p.imgDst, "page-server.pid")
	}
	// What `ferry runs recover` needs if this ferry dies mid-move.
	if err := p.save(runDir); err != nil {
		return migrate.RestoreRequest{}, err
	}
	// The restored workload must go on from its last status.
	if s, err := zoo.ReadStatus(filepath.Join(p.w.Rootfs, zoo.StatusFile)); err == nil && p.w.Zoo != "" && s.OK && s.Counter > p.w.Counter {
		p.w.Counter = s.Counter
		_ = p.tb.withState(func(st *State) error {
			if w := st.workload(p.name); w != nil && w.Counter < s.Counter {
				w.Counter = s.Counter
			}
			return nil
		})
	}
	if p.mode == migrate.ModePageServer {
		port := 27000 + p.w.ID%1000
		_, err := p.DestHost().Run(ctx, []string{p.tb.CRIU, "page-server", "-D", p.imgDst,
			"--address", p.dst.Addr, "--port", strconv.Itoa(port), "-d", "--pidfile", p.psPidFile,
			"-o", filepath.Join(runDir, "page-server.log"), "-v4"}, host.RunOptions{Timeout: 30 * time.Second})
		if err != nil {
			return migrate.RestoreRequest{}, fmt.Errorf("start CRIU's page server on %s: %w", p.dst.Name, err)
		}
		p.ps = &migrate.PageServer{Address: p.dst.Addr, Port: port}
	}
	req := migrate.RestoreRequest{ImagesDir: p.imgDst, Root: p.dstRoot, TCPEstablished: true, NetworkLock: "nftables"}
	if p.w.Net == NetOwn {
		req.External = []string{"veth[eth0]:" + p.w.Veth}
	}
	return req, nil
}

func (p *Placement) Transfer(ctx context.Context, s *migrate.Step) error {
	if p.ps != nil {
		// The page server exits once the dump closed its connection;
		// only then are the pages it wrote complete.
		if pid := readPid(p.psPidFile); pid > 0 && len(waitGone([]int{pid}, 30*time.Second)) > 0 {
			return fmt.Errorf("CRIU's page server (pid %d) on %s did not finish", pid, p.dst.Name)
		}
	}
	if err := run(ctx, p.tb.Local, "cp", "-a", p.w.Rootfs, p.dstRoot); err != nil {
		os.RemoveAll(p.dstRoot)
		return fmt.Errorf("copy the rootfs to %s: %w", p.dst.Name, err)
	}
	if err := run(ctx, p.tb.Local, "cp", "-a", p.imgSrc+"/.", p.imgDst+"/"); err != nil {
		return fmt.Errorf("copy the images to %s: %w", p.dst.Name, err)
	}
	p.transferred = true
	s.Notes = map[string]string{"rootfs": p.dstRoot, "images": p.imgDst,
		"image_bytes": strconv.FormatInt(criu.ImageBytes(p.imgDst), 10)}
	return nil
}

func (p *Placement) Adopt(ctx context.Context, _ func(context.Context, migrate.RestoreRequest) (*migrate.RestoreResult, error), req migrate.RestoreRequest) (*migrate.RestoreResult, error) {
	lr, err := p.restoreOn(ctx, p.dst, p.dstRoot, req)
	if err != nil {
		return restoredOf(lr), err
	}
	err = p.tb.withState(func(st *State) error {
		w := st.workload(p.name)
		if w == nil {
			return fmt.Errorf("workload %s vanished from the testbed state", p.name)
		}
		w.Host, w.Rootfs, w.Pid, w.StartTime, w.Supervisor = p.dst.Name, p.dstRoot, lr.Pid, lr.StartTime, lr.Supervisor
		p.moved = true
		return p.tb.route(ctx, st, w)
	})
	return restoredOf(lr), err
}

func restoredOf(lr *launchResult) *migrate.RestoreResult {
	if lr == nil {
		return nil
	}
	if lr.Restored != nil {
		r := *lr.Restored
		r.PID = lr.Pid
		return &r
	}
	return &migrate.RestoreResult{PID: lr.Pid}
}

// restoreOn restores the workload from the images on host h under a new
// supervisor, and removes CRIU's lock tables there.
func (p *Placement) restoreOn(ctx context.Context, h HostState, root string, req migrate.RestoreRequest) (*launchResult, error) {
	st, err := p.tb.load()
	if err != nil || st == nil {
		return nil, errors.Join(err, errDown())
	}
	spec := &launchSpec{
		Mode: "restore", Name: p.name, Rootfs: root, NewNet: p.w.Net == NetOwn, Veth: p.w.Veth, Addr: p.w.Addr,
		Marker: MarkerEnv + "=" + st.ID, Restore: &req, CRIU: p.tb.CRIU,
	}
	hh := p.tb.Host(h.Name)
	lr, err := p.tb.launch(ctx, hh, spec)
	_, _ = deleteCRIUTables(ctx, hh)
	if err == nil && p.w.Net == NetOwn {
		inner := &host.Netns{Label: "workload:" + p.name, Netns: fmt.Sprintf("../../proc/%d/ns/net", lr.Pid)}
		_, _ = deleteCRIUTables(ctx, inner)
	}
	if err != nil {
		f := &migrate.Failure{Op: "restore", Err: err}
		if lr != nil && lr.Restored != nil {
			f.Log = lr.Restored.Log
			if b, rerr := os.ReadFile(f.Log); rerr == nil && p.Lift != nil {
				f.Lifted = p.Lift(string(b))
			}
		}
		return lr, f
	}
	return lr, nil
}

// Verify asks the moved workload for its self-check.
func (p *Placement) Verify(ctx context.Context, _ int) error {
	r, err := p.tb.Verify(ctx, p.name)
	if err != nil {
		return err
	}
	if !r.OK {
		return fmt.Errorf("%s on %s failed verify: %s", p.name, r.Host, strings.Join(r.Problems, "; "))
	}
	return nil
}

// KillTarget removes the restored copy and points the state back at the
// stopped source.
func (p *Placement) KillTarget(ctx context.Context, pid int) error {
	if ps := readPid(p.psPidFile); ps > 0 {
		_ = syscall.Kill(ps, syscall.SIGKILL)
	}
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if left := waitGone([]int{pid}, 10*time.Second); len(left) > 0 {
			return fmt.Errorf("the restored copy (pid %d) on %s does not die", pid, p.dst.Name)
		}
	}
	os.RemoveAll(p.dstRoot)
	if !p.resumeNeedsDst() {
		os.RemoveAll(p.imgDst)
	}
	if !p.moved {
		return nil
	}
	return p.tb.withState(func(st *State) error {
		w := st.workload(p.name)
		if w == nil {
			return nil
		}
		w.Host, w.Rootfs, w.Pid, w.StartTime, w.Supervisor = p.w.Host, p.w.Rootfs, p.w.Pid, p.w.StartTime, p.w.Supervisor
		p.moved = false
		return p.tb.route(ctx, st, w)
	})
}

// Resume brings the source back. A tree with established TCP connections
// cannot just be continued: CRIU left its sockets in repair mode, and only
// CRIU takes them out; such a tree is restored again on its own host from
// the images. Any other tree is continued where it stopped.
func (p *Placement) Resume(ctx context.Context) error {
	srcHost := p.SourceHost()
	inner := &host.Netns{Label: "workload:" + p.name, Netns: fmt.Sprintf("../../proc/%d/ns/net", p.w.Pid)}
	tcp, _ := filepath.Glob(filepath.Join(p.imgSrc, "tcp-stream-*.img"))
	if len(tcp) == 0 {
		_, _ = deleteCRIUTables(ctx, srcHost)
		if p.w.Net == NetOwn {
			_, _ = deleteCRIUTables(ctx, inner)
		}
		for _, q := range migrate.ProcessTree(p.w.Pid) {
			_ = syscall.Kill(q, syscall.SIGCONT)
		}
		return p.sourceRoutes(ctx)
	}
	// Restore on the source from complete images.
	imgs := p.imgSrc
	if p.resumeNeedsDst() {
		imgs = p.imgDst
		defer os.RemoveAll(p.imgDst)
	} else if p.ps != nil {
		return fmt.Errorf("cannot resume %s: its TCP sockets are in repair mode and its pages went to %s's page server", p.name, p.dst.Name)
	}
	_ = syscall.Kill(p.w.Pid, syscall.SIGKILL)
	waitGone([]int{p.w.Pid}, 10*time.Second)
	if p.w.Net == NetOwn {
		// The dead tree's network namespace goes away asynchronously; its
		// link would clash with the one CRIU is about to create.
		if err := p.dropLink(ctx, srcHost); err != nil {
			return err
		}
	}
	req := migrate.RestoreRequest{ImagesDir: imgs, LogDir: filepath.Dir(p.imgSrc), Root: p.w.Rootfs, TCPEstablished: true, NetworkLock: "nftables"}
	if p.w.Net == NetOwn {
		req.External = []string{"veth[eth0]:" + p.w.Veth}
	}
	lr, err := p.restoreOn(ctx, p.src, p.w.Rootfs, req)
	if err != nil {
		_ = p.tb.withState(func(st *State) error { st.removeWorkload(p.name); return nil })
		return fmt.Errorf("restoring %s on %s failed too, the workload is lost: %w", p.name, p.src.Name, err)
	}
	return p.tb.withState(func(st *State) error {
		w := st.workload(p.name)
		if w == nil {
			return nil
		}
		w.Pid, w.StartTime, w.Supervisor = lr.Pid, lr.StartTime, lr.Supervisor
		p.w.Pid = lr.Pid
		return p.tb.route(ctx, st, w)
	})
}

// resumeNeedsDst reports whether Resume must restore the source from the
// target's copy of the images: a tree with TCP connections whose pages went
// to the page server. KillTarget keeps that copy for it.
func (p *Placement) resumeNeedsDst() bool {
	if !p.transferred {
		return false
	}
	tcp, _ := filepath.Glob(filepath.Join(p.imgSrc, "tcp-stream-*.img"))
	return len(tcp) > 0
}

// dropLink deletes the workload's host-side link on h and waits until it
// is gone.
func (p *Placement) dropLink(ctx context.Context, h host.Host) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := h.Run(ctx, []string{"ip", "link", "show", p.w.Veth}, host.RunOptions{}); err != nil {
			return nil
		}
		_, _ = h.Run(ctx, []string{"ip", "link", "del", p.w.Veth}, host.RunOptions{})
	}
	return fmt.Errorf("link %s on %s does not go away", p.w.Veth, h.Name())
}

// sourceRoutes points the workload's address back at its source host.
func (p *Placement) sourceRoutes(ctx context.Context) error {
	if p.w.Addr == "" {
		return nil
	}
	if p.w.Net == NetOwn {
		if err := run(ctx, p.SourceHost(), "ip", "route", "replace", p.w.Addr+"/32", "dev", p.w.Veth); err != nil {
			return err
		}
	}
	return p.tb.withState(func(st *State) error {
		if w := st.workload(p.name); w != nil {
			return p.tb.route(ctx, st, w)
		}
		return nil
	})
}

// Commit removes the stopped source: its tree, its rootfs and CRIU's lock
// table in its host.
func (p *Placement) Commit(ctx context.Context, _ int) error {
	_ = syscall.Kill(p.w.Pid, syscall.SIGKILL)
	if left := waitGone([]int{p.w.Pid}, 10*time.Second); len(left) > 0 {
		return fmt.Errorf("the stopped source (pid %d) on %s does not die", p.w.Pid, p.src.Name)
	}
	_, _ = deleteCRIUTables(ctx, p.SourceHost())
	os.RemoveAll(p.w.Rootfs)
	// The images served their purpose; the run directory keeps the logs
	// and stats. A soak would otherwise fill the disk.
	if !p.KeepImages {
		os.RemoveAll(p.imgSrc)
		os.RemoveAll(p.imgDst)
	}
	return p.tb.withState(func(st *State) error {
		if w := st.workload(p.name); w != nil {
			w.Moves++
		}
		return nil
	})
}

func readPid(path string) int {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// ProgressDir names the directory whose growth shows a step's progress:
// the images a dump writes (on the target in page-server mode), the copy a
// transfer makes.
func (p *Placement) ProgressDir(step string) string {
	switch {
	case step == migrate.StepDump && p.ps != nil, step == migrate.StepTransfer:
		return p.imgDst
	case step == migrate.StepDump:
		return p.imgSrc
	}
	return ""
}

// StallTimeout is how long a page-server transfer may make no progress
// before the guard breaks it.
var StallTimeout = 10 * time.Second

// Guard watches the dump's connection to the page server (page-server
// mode): when its acknowledged bytes stop moving for StallTimeout (the link
// is down: TCP would retry for many minutes), it destroys the socket in the
// source host (ss -K, SOCK_DESTROY). CRIU's write then fails, CRIU fails the
// dump and resumes the tree, and the engine reports the failure.
func (p *Placement) Guard(ctx context.Context) func() string {
	return migrate.WatchPageServer(ctx, p.SourceHost(), p.ps, p.dst.Name, StallTimeout)
}
