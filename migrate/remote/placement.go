package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/agent"
	"github.com/ferry-migrate/ferry/migrate/criu"
)

// Placement moves a process tree (pid:N) of this machine to a plain host
// reached over SSH, under the migrate engine (it implements
// migrate.Placement). CRIU dumps the tree here and leaves it stopped with
// its network locked; the images go to the target as one tar stream (or
// the pages straight to a CRIU page server the placement starts there);
// ferry's agent, copied to the target beforehand, restores the tree there
// detached, so that it outlives the SSH session. On failure the stopped
// source is continued; on success it is killed.
//
// There is no root filesystem to carry: the files the tree uses (its
// executable, libraries, open files, working directory) must exist on the
// target at the same paths.
type Placement struct {
	// Source is where the tree runs: this machine (CRIU's dump and the
	// source's rollback act on local processes).
	Source host.Host
	// Dest is the target host.
	Dest host.Host
	PID  int
	Mode string
	// TCPEstablished, ShellJob and NetworkLock are passed to CRIU on
	// both ends.
	TCPEstablished bool
	ShellJob       bool
	NetworkLock    string
	// ImagesDir is where the dump writes on the source.
	ImagesDir string
	// Exe is the static ferry binary copied to Dest to run the agent.
	Exe string
	// CRIU is the CRIU binary on Dest ("" lets the agent find it).
	CRIU string
	// Dir is ferry's directory on Dest (DefaultDir when empty); the run
	// keeps its files in Dir/remote/<run id> and removes them when done.
	Dir string
	// PageServerAddress is the target's address as the source reaches it
	// (page-server mode); PageServerPort 0 picks one from the pid.
	PageServerAddress string
	PageServerPort    int
	// Restorer, when set, restores on the source from the images when a
	// stopped tree cannot simply be continued (its TCP sockets are in
	// repair mode).
	Restorer migrate.Driver
	// OnBinary is told where ferry's binary is on Dest once Prepare
	// ensured it.
	OnBinary func(*Binary)

	driver       agent.Driver
	runDir       string
	remoteDir    string
	remoteImgs   string
	bin          *Binary
	ps           *migrate.PageServer
	psPidFile    string
	transferred  bool
	restoreLog   string // the target's restore log, fetched into runDir
	psLogFetched bool
}

var (
	_ migrate.Placement = (*Placement)(nil)
	_ migrate.Guard     = (*Placement)(nil)
)

// StallTimeout is how long a page-server transfer to the target may make
// no progress before the guard breaks it.
var StallTimeout = 10 * time.Second

// Guard watches the dump's connection to the target's page server
// (page-server mode): a transfer that stopped moving (the link to the
// target is down) is broken after StallTimeout, so that CRIU fails the
// dump and resumes the tree instead of holding it frozen while TCP
// retries for many minutes.
func (p *Placement) Guard(ctx context.Context) func() string {
	return migrate.WatchPageServer(ctx, p.Source, p.ps, p.Dest.Name(), StallTimeout)
}

// DefaultPageServerPort is the page server's port for the tree of pid
// when none is given.
func DefaultPageServerPort(pid int) int { return 27000 + pid%1000 }

// DestDriver is the driver that restores on the target (ferry's agent,
// started from the binary Prepare put there).
func (p *Placement) DestDriver() migrate.Driver {
	p.driver.Host, p.driver.Label = p.Dest, "criu"
	return &p.driver
}

func (p *Placement) dir() string {
	if p.Dir == "" {
		return DefaultDir
	}
	return p.Dir
}

func (p *Placement) Checkpoint() migrate.CheckpointRequest {
	return migrate.CheckpointRequest{
		Target:    migrate.Target{Kind: migrate.KindPID, PID: p.PID},
		ImagesDir: p.ImagesDir, TCPEstablished: p.TCPEstablished, ShellJob: p.ShellJob,
		NetworkLock: p.NetworkLock, PageServer: p.ps,
	}
}

// Prepare puts ferry on the target, makes the run's directory there and,
// in page-server mode, starts CRIU's page server on it.
func (p *Placement) Prepare(ctx context.Context, runDir string) (migrate.RestoreRequest, error) {
	p.runDir = runDir
	bin, err := EnsureBinary(ctx, p.Dest, p.Exe, p.dir())
	if err != nil {
		return migrate.RestoreRequest{}, err
	}
	p.bin = bin
	p.driver.Argv = bin.AgentArgv(p.CRIU)
	if p.OnBinary != nil {
		p.OnBinary(bin)
	}
	p.remoteDir = path.Join(p.dir(), "remote", filepath.Base(runDir))
	p.remoteImgs = path.Join(p.remoteDir, "images")
	if p.Mode == migrate.ModePageServer {
		p.psPidFile = path.Join(p.remoteDir, "page-server.pid")
	}
	// What `ferry runs recover` needs if this ferry dies mid-move.
	if err := p.save(); err != nil {
		return migrate.RestoreRequest{}, err
	}
	if _, err := p.Dest.Run(ctx, []string{"mkdir", "-p", "-m", "0700", "--", p.remoteImgs}, host.RunOptions{}); err != nil {
		return migrate.RestoreRequest{}, fmt.Errorf("make the images directory on %s: %w", p.Dest.Name(), err)
	}
	// The images travel as a tar stream: better found missing now than
	// with the tree frozen.
	if _, err := p.Dest.Run(ctx, []string{"tar", "--version"}, host.RunOptions{}); err != nil {
		return migrate.RestoreRequest{}, fmt.Errorf("tar on %s: %w", p.Dest.Name(), err)
	}
	if p.Mode == migrate.ModePageServer {
		if p.PageServerAddress == "" {
			return migrate.RestoreRequest{}, errors.New("page-server mode needs the target's address")
		}
		port := p.PageServerPort
		if port == 0 {
			port = DefaultPageServerPort(p.PID)
		}
		criuBin := p.CRIU
		if criuBin == "" {
			criuBin = "criu"
		}
		_, err := p.Dest.Run(ctx, []string{criuBin, "page-server", "-D", p.remoteImgs,
			"--address", p.PageServerAddress, "--port", strconv.Itoa(port), "-d", "--pidfile", p.psPidFile,
			"-o", path.Join(p.remoteDir, "page-server.log"), "-v4"}, host.RunOptions{Timeout: 30 * time.Second})
		if err != nil {
			return migrate.RestoreRequest{}, fmt.Errorf("start CRIU's page server on %s: %w", p.Dest.Name(), err)
		}
		p.ps = &migrate.PageServer{Address: p.PageServerAddress, Port: port}
	}
	return migrate.RestoreRequest{ImagesDir: p.remoteImgs, TCPEstablished: p.TCPEstablished, ShellJob: p.ShellJob, NetworkLock: p.NetworkLock}, nil
}

// pageServerPid is the page server's pid on the target (0: none).
func (p *Placement) pageServerPid(ctx context.Context) int {
	if p.psPidFile == "" {
		return 0
	}
	b, err := host.ReadFile(ctx, p.Dest, p.psPidFile, 64)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// fetchLogs copies the target's restore log into the run directory (and
// drops the lock tables of that CRIU run there), and the page server's
// log; once.
func (p *Placement) fetchLogs(ctx context.Context) {
	p.fetchRestoreLog(ctx, nil, nil)
	if p.psPidFile != "" && !p.psLogFetched {
		p.psLogFetched = true
		_, _ = Fetch(ctx, p.Dest, path.Join(p.remoteDir, "page-server.log"), p.runDir)
	}
}

// Transfer waits for the page server to finish (page-server mode), then
// sends the images to the target.
func (p *Placement) Transfer(ctx context.Context, s *migrate.Step) error {
	if p.ps != nil {
		// The page server exits once the dump closed its connection;
		// only then are the pages it wrote complete.
		if pid := p.pageServerPid(ctx); pid > 0 {
			if err := waitGone(ctx, p.Dest, pid, 30*time.Second); err != nil {
				return fmt.Errorf("CRIU's page server (pid %d) on %s did not finish: %w", pid, p.Dest.Name(), err)
			}
		}
	}
	start := time.Now()
	if err := CopyDir(ctx, p.Source, p.ImagesDir, p.Dest, p.remoteImgs); err != nil {
		return fmt.Errorf("copy the images to %s: %w", p.Dest.Name(), err)
	}
	p.transferred = true
	s.Notes = map[string]string{
		"images":      p.Dest.Name() + ":" + p.remoteImgs,
		"image_bytes": strconv.FormatInt(criu.ImageBytes(p.ImagesDir), 10),
		"copy":        time.Since(start).Round(time.Millisecond).String(),
	}
	if p.bin != nil {
		s.Notes["ferry"] = p.bin.Note()
	}
	if p.ps != nil {
		s.Notes["page_server"] = net.JoinHostPort(p.ps.Address, strconv.Itoa(p.ps.Port))
	}
	return nil
}

// waitGone waits until pid is no longer a live process on h: one command
// (tail --pid polls every 20 ms there), not a round trip per poll.
func waitGone(ctx context.Context, h host.Host, pid int, d time.Duration) error {
	_, err := h.Run(ctx, []string{"tail", "-f", "-s", "0.02", "--pid=" + strconv.Itoa(pid), "/dev/null"}, host.RunOptions{Timeout: d})
	if err == nil {
		return nil
	}
	// A zombie waits for its parent, and tail takes it for alive.
	if st, serr := procState(ctx, h, pid); serr == nil && (st == "" || st == "Z" || st == "X") {
		return nil
	}
	return err
}

// Adopt restores through the agent on the target, with CRIU's log in the
// run's directory there. The log is fetched into the local run directory
// (where the journal points) at once on failure, and only by Verify on
// success: the workload is down until Adopt returns.
func (p *Placement) Adopt(ctx context.Context, restore func(context.Context, migrate.RestoreRequest) (*migrate.RestoreResult, error), req migrate.RestoreRequest) (*migrate.RestoreResult, error) {
	req.LogDir = p.remoteDir
	res, err := restore(ctx, req)
	if err != nil {
		p.fetchRestoreLog(ctx, res, err)
		return res, explainFiles(p.Dest, err)
	}
	if res != nil {
		res.Log = filepath.Join(p.runDir, criu.RestoreLog)
	}
	return res, nil
}

// fetchRestoreLog copies the target's restore log into the run directory
// and drops the lock tables of that CRIU run on the target.
func (p *Placement) fetchRestoreLog(ctx context.Context, res *migrate.RestoreResult, err error) {
	if p.restoreLog != "" {
		return
	}
	p.restoreLog = localLog(ctx, p.Dest, path.Join(p.remoteDir, criu.RestoreLog), p.runDir, res, err)
	if p.restoreLog != "" {
		_ = migrate.DropRunTables(ctx, p.Dest, nil, p.restoreLog)
	}
}

// localLog fetches a CRIU log from h into localDir and points res and a
// Failure in err at the copy; "" when there is none.
func localLog(ctx context.Context, h host.Host, remote, localDir string, res *migrate.RestoreResult, err error) string {
	l, ferr := Fetch(ctx, h, remote, localDir)
	if ferr != nil {
		return ""
	}
	if res != nil {
		res.Log = l
	}
	var f *migrate.Failure
	if errors.As(err, &f) {
		f.Log = l
		// The agent's hint names the log where it was on h; the
		// failure's own now names the copy.
		var re *agent.RemoteError
		if errors.As(f.Err, &re) && re.Wire.Log != "" {
			re.Wire.Hint = ""
		}
	}
	return l
}

// FilesError is a restore on another host that failed for a file the tree
// uses: ferry carries the tree's state, not its files.
type FilesError struct {
	Host string
	Err  error
}

func (e *FilesError) Error() string { return e.Err.Error() }
func (e *FilesError) Unwrap() error { return e.Err }
func (e *FilesError) Hint() string {
	return "the tree's executable, working directory and files must exist on " + e.Host + " at the same paths: ferry moves its memory and state, not its files"
}

// explainFiles wraps a restore failure whose CRIU log says a file is
// missing in a FilesError.
func explainFiles(h host.Host, err error) error {
	var f *migrate.Failure
	if !errors.As(err, &f) {
		return err
	}
	for _, l := range f.Lifted {
		if strings.Contains(l, "No such file or directory") {
			return &FilesError{Host: h.Name(), Err: err}
		}
	}
	return err
}

// Verify checks that the restored tree runs on the target, twice a moment
// apart: a tree that dies right after CRIU let it go does not pass.
func (p *Placement) Verify(ctx context.Context, pid int) error {
	p.fetchLogs(ctx)
	if err := Runs(ctx, p.Dest, pid); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	return Runs(ctx, p.Dest, pid)
}

// KillTarget removes what the run left on the target: the page server,
// the restored tree, CRIU's lock tables of the restore and the run's
// directory. Safe after a partial Prepare.
func (p *Placement) KillTarget(ctx context.Context, pid int) error {
	if p.remoteDir == "" {
		return nil
	}
	var errs []error
	if ps := p.pageServerPid(ctx); ps > 0 {
		errs = append(errs, KillTree(ctx, p.Dest, ps))
	}
	errs = append(errs, KillTree(ctx, p.Dest, pid))
	p.fetchLogs(ctx)
	errs = append(errs, Remove(ctx, p.Dest, p.remoteDir))
	return errors.Join(errs...)
}

func (p *Placement) dumpLog() string { return filepath.Join(p.runDir, criu.DumpLog) }

// Resume brings the stopped source back: CRIU's lock table goes first,
// then the tree is continued (SIGCONT). A tree with established TCP
// connections cannot be continued (CRIU left its sockets in repair mode):
// it is restored again here from the images.
func (p *Placement) Resume(ctx context.Context) error {
	tcp, _ := filepath.Glob(filepath.Join(p.ImagesDir, "tcp-stream-*.img"))
	if len(tcp) == 0 {
		if err := migrate.DropRunTables(ctx, p.Source, nil, p.dumpLog()); err != nil {
			return err
		}
		for _, q := range migrate.ProcessTree(p.PID) {
			_ = syscall.Kill(q, syscall.SIGCONT)
		}
		return nil
	}
	if p.ps != nil {
		return fmt.Errorf("cannot resume pid %d: its TCP sockets are in repair mode and its pages went to %s's page server", p.PID, p.Dest.Name())
	}
	if p.Restorer == nil {
		return fmt.Errorf("cannot resume pid %d: its TCP sockets are in repair mode and no driver restores it here", p.PID)
	}
	if err := killLocalTree(p.PID, false); err != nil {
		return err
	}
	logDir := filepath.Join(p.runDir, "resume")
	_, err := p.Restorer.Restore(ctx, migrate.RestoreRequest{ImagesDir: p.ImagesDir, LogDir: logDir,
		TCPEstablished: true, ShellJob: p.ShellJob, NetworkLock: p.NetworkLock})
	_ = migrate.DropRunTables(ctx, p.Source, nil, p.dumpLog(), filepath.Join(logDir, criu.RestoreLog))
	if err != nil {
		return fmt.Errorf("restoring pid %d here failed too, the workload is lost (images in %s): %w", p.PID, p.ImagesDir, err)
	}
	return nil
}

// killLocalTree kills the stopped source tree and waits until its root is
// gone, or with zombieOK a zombie. A tree restored in its place needs the
// pid back: its parent must have reaped it.
func killLocalTree(pid int, zombieOK bool) error {
	for _, q := range migrate.ProcessTree(pid) {
		_ = syscall.Kill(q, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err := procState(context.Background(), host.Local{}, pid)
		if err == nil && (st == "" || (zombieOK && (st == "Z" || st == "X"))) {
			return nil
		}
	}
	if zombieOK {
		return fmt.Errorf("the stopped source (pid %d) does not die", pid)
	}
	return fmt.Errorf("the stopped source (pid %d) was killed but its parent does not reap it: its pid is not free for the restore", pid)
}

// Commit kills the stopped source tree, drops its CRIU lock table and
// removes the images on both ends.
func (p *Placement) Commit(ctx context.Context, _ int) error {
	if err := killLocalTree(p.PID, true); err != nil {
		return err
	}
	// The tree runs on the target: leftover images are no reason to call
	// the move failed.
	_ = Remove(ctx, p.Dest, p.remoteDir)
	_ = os.RemoveAll(p.ImagesDir)
	return migrate.DropRunTables(ctx, p.Source, nil, p.dumpLog())
}

// ProgressDir names the local directory whose growth shows a step's
// progress (the dump's images).
func (p *Placement) ProgressDir(step string) string {
	if step == migrate.StepDump && p.ps == nil {
		return p.ImagesDir
	}
	return ""
}
