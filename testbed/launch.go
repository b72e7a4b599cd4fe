package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// SelfArgs are the words after the ferry binary that reach the testbed's
// hidden entry points: `ferry testbed __launch SPEC` and friends.
var SelfArgs = []string{"testbed"}

// The hidden entry points (see Internal).
const (
	cmdLaunch    = "__launch"
	cmdSupervise = "__supervise"
	cmdInit      = "__init"
	cmdZoo       = "__zoo"
)

// InternalCommands are the hidden subcommands cmd must route to Internal.
var InternalCommands = []string{cmdLaunch, cmdSupervise, cmdInit, cmdZoo}

// launchSpec tells the launcher what to start (Mode "start") or restore
// (Mode "restore"); it is written as JSON next to the workload's logs.
type launchSpec struct {
	Mode   string   `json:"mode"`
	Name   string   `json:"name"`
	Rootfs string   `json:"rootfs"`
	Argv   []string `json:"argv"`
	Env    []string `json:"env"`
	NewNet bool     `json:"new_net"`
	Veth   string   `json:"veth,omitempty"`
	Addr   string   `json:"addr,omitempty"`
	// Marker is MarkerEnv=ID, set on the supervisor and the workload.
	Marker string `json:"marker"`
	Log    string `json:"log"`
	// Restore only: the CRIU command line and the pidfile it writes.
	RestoreArgv []string `json:"restore_argv,omitempty"`
	PidFile     string   `json:"pid_file,omitempty"`
	// Restore only, through go-criu (ferry migrate): the request and the
	// CRIU binary; used instead of RestoreArgv when set.
	Restore *migrate.RestoreRequest `json:"restore,omitempty"`
	CRIU    string                  `json:"criu,omitempty"`
}

// launchResult is what the launcher prints on stdout.
type launchResult struct {
	Pid        int    `json:"pid"`
	StartTime  uint64 `json:"start_time"`
	Supervisor int    `json:"supervisor"`
	Error      string `json:"error,omitempty"`
	// Restored is go-criu's account of a restore (log, stats).
	Restored *migrate.RestoreResult `json:"restored,omitempty"`
}

// Internal runs one of the hidden entry points; args are what follows its
// name. It only returns for __launch and on errors: the supervisor exits
// when its workload is gone, __init becomes the workload, and a zoo
// workload runs until killed.
func Internal(ctx context.Context, name string, args []string) error {
	switch name {
	case cmdZoo:
		if len(args) < 1 {
			return fmt.Errorf("%s: want a workload name", name)
		}
		return zoo.Run(ctx, "/", args[0], args[1:])
	case cmdLaunch, cmdSupervise, cmdInit:
		if len(args) != 1 {
			return fmt.Errorf("%s: want SPEC-FILE", name)
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		var spec launchSpec
		if err := json.Unmarshal(b, &spec); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		switch name {
		case cmdLaunch:
			return launchMain(args[0], &spec)
		case cmdSupervise:
			return superviseMain(ctx, args[0], &spec)
		default:
			return initMain(&spec)
		}
	}
	return fmt.Errorf("unknown internal command %q", name)
}

// launchMain starts the supervisor as a new session, detached from the
// caller (its stdio is the log file), and waits only for its first report:
// the workload's pid, or why it could not start. It prints that as JSON.
func launchMain(specPath string, spec *launchSpec) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append(append([]string{}, SelfArgs...), cmdSupervise, specPath)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), spec.Marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	pw.Close()
	b, _ := io.ReadAll(pr)
	var res launchResult
	if err := json.Unmarshal(b, &res); err != nil {
		// The supervisor died before it reported: its log says why.
		tail, _ := os.ReadFile(spec.Log)
		res.Error = fmt.Sprintf("supervisor reported %q: %s", b, lastLines(string(tail), 5))
	}
	res.Supervisor = cmd.Process.Pid
	// The supervisor outlives us; it is not ours to wait for.
	cmd.Process.Release()
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

// superviseMain is the workload's parent in the host's namespaces: a child
// subreaper that starts (or has CRIU restore) the workload, reports it on
// fd 3, then reaps until the workload is gone.
func superviseMain(ctx context.Context, specPath string, spec *launchSpec) error {
	report := os.NewFile(3, "report")
	syscall.CloseOnExec(3)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return reportErr(report, fmt.Errorf("become a child subreaper: %w", err))
	}
	var pid int
	var err error
	var restored *migrate.RestoreResult
	if spec.Mode == "restore" && spec.Restore != nil {
		pid, restored, err = superviseDriverRestore(ctx, spec)
	} else if spec.Mode == "restore" {
		pid, err = superviseRestore(ctx, spec)
	} else {
		pid, err = superviseStart(ctx, specPath, spec)
	}
	if err != nil {
		// A restored tree whose network could not be linked is of no use,
		// and the caller will restore it elsewhere: it must not run twice.
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		b, _ := json.Marshal(launchResult{Error: err.Error(), Restored: restored})
		report.Write(b)
		report.Close()
		reap(-1)
		return err
	}
	st, _ := readStat(pid)
	b, _ := json.Marshal(launchResult{Pid: pid, StartTime: st.StartTime, Restored: restored})
	report.Write(b)
	report.Close()
	fmt.Printf("%s: workload %s runs as pid %d\n", time.Now().UTC().Format(time.RFC3339), spec.Name, pid)
	reap(pid)
	return nil
}

func reportErr(report *os.File, err error) error {
	b, _ := json.Marshal(launchResult{Error: err.Error()})
	report.Write(b)
	report.Close()
	return err
}

// reap waits for children (and orphans handed to us as a subreaper) until
// none is left.
func reap(workload int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		if pid == workload {
			fmt.Printf("%s: workload pid %d ended: %s\n", time.Now().UTC().Format(time.RFC3339), pid, describeWait(ws))
		}
	}
}

func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

func superviseStart(ctx context.Context, specPath string, spec *launchSpec) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	flags := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if spec.NewNet {
		flags |= unix.CLONE_NEWNET
	}
	cmd := exec.Command(exe, append(append([]string{}, SelfArgs...), cmdInit, specPath)...)
	cmd.ExtraFiles = []*os.File{goR, errW} // fds 3 and 4 in __init
	cmd.Env = append(append([]string{}, spec.Env...), spec.Marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the namespace init: %w", err)
	}
	goR.Close()
	errW.Close()
	pid := cmd.Process.Pid
	if spec.NewNet {
		if err := setupNet(ctx, spec, pid); err != nil {
			goW.Close()
			syscall.Kill(pid, syscall.SIGKILL)
			return 0, err
		}
	}
	goW.Write([]byte("go"))
	goW.Close()
	msg, _ := io.ReadAll(errR)
	if len(msg) > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		return 0, fmt.Errorf("launch %s: %s", spec.Name, msg)
	}
	return pid, nil
}

// setupNet links a new workload's network namespace to its host: a veth
// whose workload end is eth0 with the workload's /32, and a default route
// through it; on the host side proxy ARP answers for every address, and a
// /32 route leads back. Nothing in the workload names its host, so the
// same set-up works on whichever host CRIU restores it.
func setupNet(ctx context.Context, spec *launchSpec, pid int) error {
	l := host.Local{}
	inner := fmt.Sprintf("/proc/%d/ns/net", pid)
	for _, argv := range [][]string{
		{"ip", "link", "add", spec.Veth, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid)},
		{"nsenter", "--net=" + inner, "--", "ip", "link", "set", "lo", "up"},
		{"nsenter", "--net=" + inner, "--", "ip", "addr", "add", spec.Addr + "/32", "dev", "eth0"},
		{"nsenter", "--net=" + inner, "--", "ip", "link", "set", "eth0", "up"},
		{"nsenter", "--net=" + inner, "--", "ip", "route", "add", "default", "dev", "eth0"},
	} {
		if err := run(ctx, l, argv...); err != nil {
			return err
		}
	}
	return hostSideNet(ctx, spec)
}

// hostSideNet brings up the host's end of a workload's veth.
func hostSideNet(ctx context.Context, spec *launchSpec) error {
	l := host.Local{}
	if err := run(ctx, l, "ip", "link", "set", spec.Veth, "up"); err != nil {
		return err
	}
	// This process lives in the host's network namespace, so /proc/sys/net
	// is the host's.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+spec.Veth+"/proxy_arp", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("proxy arp on %s: %w", spec.Veth, err)
	}
	return run(ctx, l, "ip", "route", "replace", spec.Addr+"/32", "dev", spec.Veth)
}

// superviseRestore runs CRIU's restore (it runs in the target host's
// network namespace, as this process does). With -d CRIU leaves the
// restored tree behind when it exits: its root is reparented to us, the
// nearest subreaper, and reaped here.
func superviseRestore(ctx context.Context, spec *launchSpec) (int, error) {
	if _, err := (host.Local{}).Run(ctx, spec.RestoreArgv, host.RunOptions{Timeout: 5 * time.Minute, Env: []string{spec.Marker}}); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(spec.PidFile)
	if err != nil {
		return 0, fmt.Errorf("restored pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("restored pid file %s: %q", spec.PidFile, b)
	}
	if spec.NewNet {
		if err := hostSideNet(ctx, spec); err != nil {
			return pid, err
		}
	}
	return pid, nil
}

// superviseDriverRestore restores through ferry's native CRIU driver
// (go-criu's swrk RPC) in this process: criu is our child, and the tree it
// restores is reparented to us, the subreaper, when it exits.
func superviseDriverRestore(ctx context.Context, spec *launchSpec) (int, *migrate.RestoreResult, error) {
	d := &criu.Driver{Path: spec.CRIU}
	res, err := d.Restore(ctx, *spec.Restore)
	if err != nil {
		return 0, res, err
	}
	if spec.NewNet {
		if err := hostSideNet(ctx, spec); err != nil {
			return res.PID, res, err
		}
	}
	return res.PID, res, nil
}

// initMain runs as PID 1 of the workload's new namespaces. It waits until
// the supervisor linked its network, then makes itself a clean root: `/`
// rprivate, the rootfs bind-mounted and pivot_root'ed into, the old root
// detached, its own /proc, a host name, stdio on the rootfs's /dev/null,
// every other fd closed on exec; then it execs the workload. What
// `unshare` or `ip netns exec` would leave (the host's mounts, inherited
// fds) is exactly what CRIU cannot dump.
func initMain(spec *launchSpec) error {
	gate := os.NewFile(3, "gate")
	errf := os.NewFile(4, "errors")
	fail := func(err error) error {
		fmt.Fprintf(errf, "%v", err)
		os.Exit(1)
		return err
	}
	io.ReadAll(gate)
	gate.Close()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make / rprivate: %w", err))
	}
	if err := unix.Mount(spec.Rootfs, spec.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fail(fmt.Errorf("bind-mount rootfs %s: %w", spec.Rootfs, err))
	}
	if err := unix.Chdir(spec.Rootfs); err != nil {
		return fail(err)
	}
	// pivot_root(".", ".") stacks the old root under the new one; the
	// detach then drops it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail(fmt.Errorf("pivot_root into %s: %w", spec.Rootfs, err))
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail(fmt.Errorf("detach the old root: %w", err))
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll("/proc", 0o555); err != nil {
		return fail(err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail(fmt.Errorf("mount /proc: %w", err))
	}
	if err := unix.Sethostname([]byte(spec.Name)); err != nil {
		return fail(fmt.Errorf("set host name: %w", err))
	}
	null, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		return fail(fmt.Errorf("open the rootfs's /dev/null: %w", err))
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(null, fd, 0); err != nil && null != fd {
			return fail(err)
		}
	}
	// Every fd from 3 up goes at exec: the errors pipe then tells the
	// supervisor by its EOF that the exec worked.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fail(fmt.Errorf("close_range: %w", err))
	}
	argv0 := spec.Argv[0]
	if !filepath.IsAbs(argv0) {
		return fail(fmt.Errorf("program %q: want an absolute path inside the rootfs", argv0))
	}
	env := append(append([]string{}, spec.Env...), spec.Marker)
	err = unix.Exec(argv0, spec.Argv, env)
	return fail(fmt.Errorf("exec %s: %w", argv0, err))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
