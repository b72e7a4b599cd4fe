package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/host"
)

const (
	// DefaultDir holds the testbed's state and the hosts' root filesystems.
	DefaultDir = "/var/lib/ferry/testbed"
	// DirEnv overrides DefaultDir.
	DirEnv = "FERRY_TESTBED_DIR"
	// PrefixEnv overrides DefaultPrefix (tests use their own, so that they
	// never touch a developer's testbed).
	PrefixEnv = "FERRY_TESTBED_PREFIX"
	// ExeEnv names a static ferry binary to run the launcher and the zoo
	// with, when this one is not static (go run, a cgo build).
	ExeEnv = "FERRY_TESTBED_EXE"
	// DefaultPrefix names the hosts tb1, tb2, ...
	DefaultPrefix = "tb"
	// MarkerEnv is set in the environment of every process the testbed
	// starts; its value is State.ID.
	MarkerEnv = "FERRY_TESTBED_ID"
	// HostNet is the private link between hosts.
	HostNet = "10.251.0.0/24"
	// WorkloadNet holds the workloads' own addresses (a /32 each).
	WorkloadNet = "10.252.0.0/16"
)

// Testbed is a set of simulated hosts on this machine. The zero value is
// not usable: fill Dir, Prefix and Exe, or use FromEnv.
type Testbed struct {
	// Dir holds state.json, the hosts' root filesystems, logs and images.
	Dir string
	// Prefix names the hosts: Prefix1, Prefix2, ...; their network
	// namespaces are host.TestbedNetnsPrefix + host name.
	Prefix string
	// Exe is a static ferry binary: it runs the launcher, the supervisor
	// and, copied into each rootfs, the zoo.
	Exe string
	// CRIU is the CRIU binary (empty: criubin.Find's choice).
	CRIU string
	// Local runs the commands that act on the machine itself.
	Local host.Host
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// FromEnv returns the testbed named by $FERRY_TESTBED_DIR and
// $FERRY_TESTBED_PREFIX, run by this executable.
func FromEnv(getenv func(string) string) (*Testbed, error) {
	tb := &Testbed{Dir: getenv(DirEnv), Prefix: getenv(PrefixEnv), Local: host.Local{}}
	if tb.Dir == "" {
		tb.Dir = DefaultDir
	}
	if tb.Prefix == "" {
		tb.Prefix = DefaultPrefix
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find ferry's own binary: %w", err)
	}
	tb.Exe = exe
	if e := getenv(ExeEnv); e != "" {
		tb.Exe = e
	}
	return tb, tb.validate()
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

func (tb *Testbed) validate() error {
	if !prefixRE.MatchString(tb.Prefix) {
		return usagef("testbed host prefix %q: want 1-8 lower-case letters and digits, starting with a letter", tb.Prefix)
	}
	if !filepath.IsAbs(tb.Dir) {
		return usagef("testbed dir %q: want an absolute path", tb.Dir)
	}
	return nil
}

func (tb *Testbed) logf(format string, args ...any) {
	if tb.Log != nil {
		fmt.Fprintf(tb.Log, format+"\n", args...)
	}
}

// HostName is the name of host i (1-based).
func (tb *Testbed) HostName(i int) string { return tb.Prefix + strconv.Itoa(i) }

// Host returns the host.Host of a testbed host (it runs commands inside
// its network namespace).
func (tb *Testbed) Host(name string) *host.Netns {
	return &host.Netns{Label: "testbed:" + name, Netns: host.TestbedNetnsPrefix + name}
}

func (tb *Testbed) switchNetns() string { return host.TestbedNetnsPrefix + tb.Prefix + "-sw" }

func (tb *Testbed) hostRoot(name string) string { return filepath.Join(tb.Dir, "hosts", name) }

// ours reports whether a /run/netns entry belongs to this testbed: the
// switch, or Prefix followed by a number.
func (tb *Testbed) ours(netns string) bool {
	if netns == tb.switchNetns() {
		return true
	}
	rest, ok := strings.CutPrefix(netns, host.TestbedNetnsPrefix+tb.Prefix)
	if !ok || rest == "" {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// run runs argv on h; errors carry the command and its stderr.
func run(ctx context.Context, h host.Host, argv ...string) error {
	_, err := h.Run(ctx, argv, host.RunOptions{Timeout: 30 * time.Second})
	return err
}

// MissingError is a prerequisite of the testbed that this machine lacks.
type MissingError struct {
	What, Hint_ string
}

func (e *MissingError) Error() string { return "testbed needs " + e.What }
func (e *MissingError) Hint() string  { return e.Hint_ }

// Preflight checks what `up` needs: root, iproute2, nsenter, nft and CRIU.
func (tb *Testbed) Preflight(ctx context.Context) (criubin.Info, error) {
	if os.Geteuid() != 0 {
		return criubin.Info{}, &MissingError{"root privileges", "run ferry testbed as root (sudo ferry testbed up)"}
	}
	for _, p := range []struct{ prog, pkg string }{{"ip", "iproute2"}, {"nsenter", "util-linux"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(p.prog); err != nil {
			return criubin.Info{}, &MissingError{p.prog + " (" + p.pkg + ")", "install it: apt-get install " + p.pkg}
		}
	}
	info, err := criubin.Find(ctx, tb.Local, tb.CRIU)
	if err != nil {
		return info, &MissingError{"CRIU: " + err.Error(), "run make deps (scripts/install-deps.sh) to install CRIU, or name one with --criu or $FERRY_CRIU"}
	}
	tb.CRIU = info.Path
	return info, nil
}

// Up creates n hosts: network namespaces Prefix1..Prefixn, each with its
// address on a bridge that lives in a namespace of its own, and a root
// directory for workloads. A testbed that is already up is an error, not a
// second set of hosts; on failure what was made is removed again.
func (tb *Testbed) Up(ctx context.Context, n int) (*State, error) {
	if n < 1 || n > 50 {
		return nil, usagef("--hosts %d: want 1 to 50", n)
	}
	if _, err := tb.Preflight(ctx); err != nil {
		return nil, err
	}
	unlock, err := tb.lockDir(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := checkDev(tb.Dir); err != nil {
		return nil, err
	}
	st, err := tb.load()
	if err != nil {
		return nil, err
	}
	if st != nil {
		return nil, withHint(fmt.Errorf("the testbed is already up with hosts %s", strings.Join(st.hostNames(), ", ")),
			"use it as it is (ferry testbed status), or run `ferry testbed down` first")
	}
	if left := tb.leftoverNetns(); len(left) > 0 {
		return nil, withHint(fmt.Errorf("network namespaces of an earlier testbed are still there: %s", strings.Join(left, ", ")),
			"remove them with `ferry testbed down`")
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	st = &State{ID: tb.Prefix + "-" + hex.EncodeToString(id), Prefix: tb.Prefix, Switch: tb.switchNetns(), Created: time.Now().UTC()}
	for i := 1; i <= n; i++ {
		name := tb.HostName(i)
		st.Hosts = append(st.Hosts, HostState{
			Name: name, Netns: host.TestbedNetnsPrefix + name, Addr: fmt.Sprintf("10.251.0.%d", i),
			Port: name, Root: tb.hostRoot(name),
		})
	}
	// Saved first, so that a failed or interrupted up is cleaned by down.
	if err := tb.save(st); err != nil {
		return nil, err
	}
	if err := tb.create(ctx, st); err != nil {
		if _, derr := tb.down(ctx, st); derr != nil {
			err = fmt.Errorf("%w (and cleaning up failed: %v)", err, derr)
		}
		return nil, err
	}
	return st, nil
}

func (tb *Testbed) create(ctx context.Context, st *State) error {
	l := tb.Local
	sw := &host.Netns{Label: "testbed:switch", Netns: st.Switch}
	if err := run(ctx, l, "ip", "netns", "add", st.Switch); err != nil {
		return err
	}
	for _, argv := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "link", "set", "br0", "up"},
	} {
		if err := run(ctx, sw, argv...); err != nil {
			return err
		}
	}
	for _, h := range st.Hosts {
		tb.logf("creating host %s (%s, %s)", h.Name, h.Netns, h.Addr)
		if err := os.MkdirAll(filepath.Join(h.Root, "rootfs"), 0o755); err != nil {
			return err
		}
		if err := run(ctx, l, "ip", "netns", "add", h.Netns); err != nil {
			return err
		}
		// The veth is made inside the switch namespace and its far end
		// moved straight into the host: no link ever shows up on the
		// machine's own network.
		for _, argv := range [][]string{
			{"ip", "link", "add", h.Port, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
			{"ip", "link", "set", h.Port, "master", "br0", "up"},
		} {
			if err := run(ctx, sw, argv...); err != nil {
				return err
			}
		}
		hh := tb.Host(h.Name)
		for _, argv := range [][]string{
			{"ip", "link", "set", "lo", "up"},
			{"ip", "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			// Hosts route their workloads' /32s.
			{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		} {
			if err := run(ctx, hh, argv...); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDev refuses a directory on a nodev mount: each workload's /dev/null
// is a device node in its rootfs, which such a mount would not open.
func checkDev(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	if fs.Flags&unix.ST_NODEV != 0 {
		return withHint(fmt.Errorf("testbed dir %s is on a nodev mount: workloads could not open their /dev/null", dir),
			"point $"+DirEnv+" at a directory on another file system (the default is "+DefaultDir+")")
	}
	return nil
}

// leftoverNetns lists this testbed's network namespaces under /run/netns.
func (tb *Testbed) leftoverNetns() []string {
	ents, _ := os.ReadDir(host.NetnsDir)
	var out []string
	for _, e := range ents {
		if tb.ours(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// DownReport says what `down` removed.
type DownReport struct {
	Netns     []string `json:"netns"`
	Processes []int    `json:"processes"`
	NftTables []string `json:"nft_tables"`
	Workloads []string `json:"workloads"`
}

func (r *DownReport) WriteText(w io.Writer) error {
	if len(r.Netns)+len(r.Processes)+len(r.NftTables)+len(r.Workloads) == 0 {
		_, err := fmt.Fprintln(w, "testbed is down (nothing to remove)")
		return err
	}
	fmt.Fprintf(w, "removed workloads:  %s\n", orNone(r.Workloads))
	fmt.Fprintf(w, "killed processes:   %s\n", orNone(intsToStrings(r.Processes)))
	fmt.Fprintf(w, "deleted nft tables: %s\n", orNone(r.NftTables))
	_, err := fmt.Fprintf(w, "deleted netns:      %s\n", orNone(r.Netns))
	return err
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func intsToStrings(v []int) []string {
	var out []string
	for _, i := range v {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// Down removes everything the testbed made: workloads and every process
// it started, CRIU's nftables tables in its namespaces, the namespaces and
// their links, and its files. It is idempotent: a testbed that is down, or
// half made, is fine.
func (tb *Testbed) Down(ctx context.Context) (*DownReport, error) {
	if err := tb.validate(); err != nil {
		return nil, err
	}
	unlock, err := tb.lock()
	if errors.Is(err, errNoDir) {
		// No files, but namespaces or processes may still be around.
		return tb.down(ctx, nil)
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := tb.load()
	if err != nil {
		// A state file we cannot read must not keep down from cleaning.
		tb.logf("warning: %v; cleaning what can be found", err)
	}
	return tb.down(ctx, st)
}

func (tb *Testbed) down(ctx context.Context, st *State) (*DownReport, error) {
	rep := &DownReport{}
	var errs []error
	netns := tb.leftoverNetns()
	// Without a state, any process marked with this prefix is ours: only
	// one testbed of a prefix can be up at a time (their namespaces would
	// clash).
	marker := tb.Prefix + "-"
	if st != nil {
		marker = st.ID
		for _, w := range st.Workloads {
			rep.Workloads = append(rep.Workloads, w.Name)
		}
	}
	killed, err := tb.killAll(st, marker, netns)
	rep.Processes = killed
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range netns {
		h := &host.Netns{Label: "testbed:" + ns, Netns: ns}
		tables, err := deleteCRIUTables(ctx, h)
		rep.NftTables = append(rep.NftTables, tables...)
		if err != nil {
			errs = append(errs, err)
		}
		if err := run(ctx, tb.Local, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Netns = append(rep.Netns, ns)
	}
	for _, p := range []string{"hosts", "images", "logs", "state.json", "state.json.tmp"} {
		if err := os.RemoveAll(filepath.Join(tb.Dir, p)); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// deleteCRIUTables deletes the `table inet CRIU-*` tables that CRIU's
// nftables network lock leaves behind in h's network namespace.
func deleteCRIUTables(ctx context.Context, h host.Host) ([]string, error) {
	out, err := host.Output(ctx, h, "nft", "list", "tables")
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "table" || !strings.HasPrefix(f[2], "CRIU-") {
			continue
		}
		if err := run(ctx, h, "nft", "delete", "table", f[1], f[2]); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, h.Name()+":"+f[1]+" "+f[2])
	}
	return deleted, errors.Join(errs...)
}
