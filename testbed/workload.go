package testbed

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// Network modes of a workload.
const (
	NetOwn  = "own"  // its own network namespace, linked to its host
	NetHost = "host" // the testbed host's network namespace
)

// RunRequest describes a workload to launch: a zoo workload, or a command.
type RunRequest struct {
	Host string
	Name string
	// Zoo names a zoo workload; Args are its arguments. For tcp-client,
	// Args may be the name of the tcp workload to connect to.
	Zoo  string
	Args []string
	// Command is a static program on this machine and its arguments; it
	// is copied into the workload's rootfs.
	Command []string
	// Memory is the mem workload's size in bytes (0: 64 MiB).
	Memory int64
	// Net is NetOwn (the default) or NetHost.
	Net string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// Run launches a workload on a testbed host as PID 1 of its own pid,
// mount, uts, ipc (and unless Net is NetHost, network) namespaces, rooted
// in a rootfs of its own under the host's directory. Names are unique
// across the testbed.
func (tb *Testbed) Run(ctx context.Context, req RunRequest) (*Workload, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, usagef("workload name %q: want 1-32 of a-z 0-9 _ . -, starting with a letter or digit", req.Name)
	}
	if req.Net == "" {
		req.Net = NetOwn
	}
	if req.Net != NetOwn && req.Net != NetHost {
		return nil, usagef("--net %q: want own or host", req.Net)
	}
	if (req.Zoo == "") == (len(req.Command) == 0) {
		return nil, usagef("name either a zoo workload or a command after --")
	}
	if req.Memory != 0 && req.Zoo != "mem" {
		return nil, usagef("--memory applies to the mem zoo workload only")
	}
	if req.Zoo != "" {
		if _, ok := zoo.Lookup(req.Zoo); !ok {
			return nil, withHint(usagef("unknown zoo workload %q", req.Zoo), "known: "+strings.Join(zoo.Names(), ", "))
		}
	}
	st, unlock, err := tb.lockUp()
	if err != nil {
		return nil, err
	}
	defer unlock()
	h := st.host(req.Host)
	if h == nil {
		return nil, withHint(fmt.Errorf("no testbed host %q", req.Host), "hosts: "+strings.Join(st.hostNames(), ", "))
	}
	if w := st.workload(req.Name); w != nil {
		return nil, withHint(fmt.Errorf("a workload named %q already runs on %s", req.Name, w.Host),
			"pick another name, or remove it with `ferry testbed kill "+req.Name+"`")
	}
	st.NextID++
	w := &Workload{
		Name: req.Name, Host: h.Name, Zoo: req.Zoo, Net: req.Net, ID: st.NextID,
		Rootfs: filepath.Join(h.Root, "rootfs", req.Name), Started: time.Now().UTC(),
	}
	if w.Net == NetOwn {
		w.Addr = fmt.Sprintf("10.252.%d.%d", w.ID/250, w.ID%250+1)
		w.Veth = "wl" + strconv.Itoa(w.ID)
	}
	if err := tb.makeRootfs(w.Rootfs); err != nil {
		os.RemoveAll(w.Rootfs)
		return nil, err
	}
	if req.Zoo != "" {
		args := req.Args
		if req.Zoo == "mem" {
			mib := int64(64)
			if req.Memory > 0 {
				mib = (req.Memory + 1<<20 - 1) >> 20
			}
			args = []string{strconv.FormatInt(mib, 10)}
		}
		if req.Zoo == "tcp-client" {
			args, err = tcpClientArgs(st, w, h, args)
			if err != nil {
				os.RemoveAll(w.Rootfs)
				return nil, err
			}
		}
		w.Argv = append(append([]string{"/ferry"}, SelfArgs...), append([]string{cmdZoo, req.Zoo}, args...)...)
	} else {
		inside, err := copyProgram(req.Command[0], w.Rootfs)
		if err != nil {
			os.RemoveAll(w.Rootfs)
			return nil, err
		}
		w.Argv = append([]string{inside}, req.Command[1:]...)
	}
	tb.logf("launching %s on %s: %s", w.Name, w.Host, strings.Join(w.Argv, " "))
	spec := &launchSpec{
		Mode: "start", Name: w.Name, Rootfs: w.Rootfs, Argv: w.Argv,
		Env:    []string{"PATH=/bin", "HOME=/", "TERM=dumb"},
		NewNet: w.Net == NetOwn, Veth: w.Veth, Addr: w.Addr,
		Marker: MarkerEnv + "=" + st.ID,
	}
	res, err := tb.launch(ctx, tb.Host(h.Name), spec)
	if err != nil {
		os.RemoveAll(w.Rootfs)
		return nil, err
	}
	w.Pid, w.StartTime, w.Supervisor = res.Pid, res.StartTime, res.Supervisor
	st.Workloads = append(st.Workloads, w)
	if err := tb.save(st); err != nil {
		return w, err
	}
	return w, tb.route(ctx, st, w)
}

// launch writes spec and runs the launcher in h's network namespace.
func (tb *Testbed) launch(ctx context.Context, h host.Host, spec *launchSpec) (*launchResult, error) {
	logs := filepath.Join(tb.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	stamp := time.Now().UTC().Format("20060102T150405.000000")
	spec.Log = filepath.Join(logs, spec.Name+"-"+spec.Mode+"-"+stamp+".log")
	specPath := strings.TrimSuffix(spec.Log, ".log") + ".json"
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		return nil, err
	}
	argv := append(append([]string{tb.Exe}, SelfArgs...), cmdLaunch, specPath)
	out, runErr := h.Run(ctx, argv, host.RunOptions{Timeout: 6 * time.Minute})
	var res launchResult
	if out != nil && len(out.Stdout) > 0 {
		if err := json.Unmarshal(out.Stdout, &res); err != nil && runErr == nil {
			return nil, fmt.Errorf("launcher said %q: %w", out.Stdout, err)
		}
	}
	if res.Error != "" {
		return &res, fmt.Errorf("%s %s on %s: %s (log: %s)", spec.Mode, spec.Name, h.Name(), res.Error, spec.Log)
	}
	if runErr != nil {
		return &res, runErr
	}
	return &res, nil
}

// tcpClientArgs turns `tcp-client SERVER-WORKLOAD` into the server's
// address and a local address that does not move: the host's own when the
// client shares its host's network, else the client's own.
func tcpClientArgs(st *State, w *Workload, h *HostState, args []string) ([]string, error) {
	if len(args) != 1 {
		return args, nil
	}
	srv := st.workload(args[0])
	if srv == nil {
		return nil, usagef("tcp-client: no workload %q to connect to", args[0])
	}
	if srv.Addr == "" {
		return nil, usagef("tcp-client: workload %q has no address of its own (start it with --net own)", args[0])
	}
	local := h.Addr
	if w.Net == NetOwn {
		local = w.Addr
	}
	return []string{fmt.Sprintf("%s:%d", srv.Addr, zoo.TCPPort), local}, nil
}

// makeRootfs creates a workload's root: the directories a process expects,
// a /dev/null device node (no bind mount from the host: CRIU would have to
// be told about it), and the ferry binary that runs the zoo.
func (tb *Testbed) makeRootfs(root string) error {
	if _, err := os.Stat(root); err == nil {
		return fmt.Errorf("rootfs %s already exists", root)
	}
	for _, d := range []string{"proc", "dev", "tmp", "bin", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	null := filepath.Join(root, "dev", "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		return fmt.Errorf("mknod %s: %w", null, err)
	}
	if err := os.Chmod(null, 0o666); err != nil {
		return err
	}
	if err := checkStatic(tb.Exe); err != nil {
		return withHint(err, "build ferry static: make build (CGO_ENABLED=0)")
	}
	return copyFile(tb.Exe, filepath.Join(root, "ferry"), 0o755)
}

// copyProgram puts a static program into the rootfs's /bin and returns its
// path inside.
func copyProgram(prog, root string) (string, error) {
	p, err := exec.LookPath(prog)
	if err != nil {
		return "", usagef("program %q: %v", prog, err)
	}
	if err := checkStatic(p); err != nil {
		return "", withHint(err, "the rootfs holds nothing but the program: give a statically linked one (gcc -static, CGO_ENABLED=0)")
	}
	inside := "/bin/" + filepath.Base(p)
	return inside, copyFile(p, filepath.Join(root, inside), 0o755)
}

// checkStatic refuses dynamically linked programs: no loader or libraries
// exist in a workload's rootfs.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF program: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// route points every other host at the host that holds w's address.
func (tb *Testbed) route(ctx context.Context, st *State, w *Workload) error {
	if w.Addr == "" {
		return nil
	}
	at := st.host(w.Host)
	var errs []error
	for _, h := range st.Hosts {
		if h.Name == w.Host {
			continue
		}
		if err := run(ctx, tb.Host(h.Name), "ip", "route", "replace", w.Addr+"/32", "via", at.Addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Kill stops a workload, removes its routes and its rootfs.
func (tb *Testbed) Kill(ctx context.Context, name string) error {
	st, unlock, err := tb.lockUp()
	if err != nil {
		return err
	}
	defer unlock()
	w := st.workload(name)
	if w == nil {
		return withHint(fmt.Errorf("%w: %q", errNoSuchWorkload, name), "list them with `ferry testbed ps`")
	}
	if alive(w.Pid, w.StartTime) {
		syscall.Kill(w.Pid, syscall.SIGKILL)
	}
	if left := waitGone([]int{w.Pid}, 5*time.Second); len(left) > 0 {
		return fmt.Errorf("workload %s (pid %d) still runs after SIGKILL", name, w.Pid)
	}
	if w.Addr != "" {
		for _, h := range st.Hosts {
			// Absent routes are fine: the workload may never have had one there.
			_ = run(ctx, tb.Host(h.Name), "ip", "route", "del", w.Addr+"/32")
		}
	}
	if err := os.RemoveAll(w.Rootfs); err != nil {
		return err
	}
	st.removeWorkload(name)
	return tb.save(st)
}
