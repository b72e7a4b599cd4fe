// Package daemontest starts the real LXD and Incus daemons for tests (through
// scripts/daemons.sh: started by hand, CRIU first on PATH, dir pool, no
// network, a busybox image) and makes throw-away containers in them.
//
// Outside CI a daemon that is not installed skips the test; with CI=true it
// fails it. Daemons this process started are stopped by Teardown (call it
// from TestMain); containers are deleted by each test's cleanup.
package daemontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
)

// Image is the alias scripts/daemons.sh imports the busybox image as.
const Image = "busybox"

var (
	mu      sync.Mutex
	started = map[string]bool{} // daemons this process started
	// lock serialises test processes (go test runs packages in parallel):
	// one package's Teardown must not stop a daemon another one uses.
	lock *os.File
)

// LockPath is the file whose flock a test process holds while it uses the
// daemons.
const LockPath = "/run/ferry-daemontest.lock"

// acquire takes the cross-process lock once per process; mu is held.
func acquire(t testing.TB) {
	t.Helper()
	if lock != nil {
		return
	}
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", LockPath, err)
	}
	lock = f
}

// script finds scripts/daemons.sh from the module root above the working
// directory.
func script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "daemons.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// installed reports whether the daemon's packages are there.
func installed(kind string) bool {
	switch kind {
	case migrate.KindLXD:
		_, err := exec.LookPath("lxd")
		return err == nil
	case migrate.KindIncus:
		_, err := os.Stat("/usr/libexec/incus/incusd")
		return err == nil
	}
	return false
}

// daemonPID is the oldest process running the daemon binary.
func daemonPID(kind string) int {
	name := "lxd"
	if kind == migrate.KindIncus {
		name = "incusd"
	}
	out, err := exec.Command("pgrep", "-x", "-o", name).Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// daemonEnv is the running daemon's environment.
func daemonEnv(pid int) map[string]string {
	env := map[string]string{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return env
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// Daemon makes sure the daemon of kind runs with the PATH the tests need and
// returns a client for it. The PATH starts with the test-only CRIU wrapper
// of WrapperDir; Incus runs with INCUS_IDMAPPED_MOUNTS_DISABLE=1. A daemon
// running otherwise is restarted.
func Daemon(t testing.TB, kind string) *lxc.Client {
	t.Helper()
	return daemon(t, kind, false)
}

// DaemonIdmapped starts incusd with idmapped mounts left ON, the setting
// under which CRIU 4.2.1 restores containers with an unwritable root
// filesystem. The next Daemon call restarts it normally.
func DaemonIdmapped(t testing.TB) *lxc.Client {
	t.Helper()
	return daemon(t, migrate.KindIncus, true)
}

func daemon(t testing.TB, kind string, idmapped bool) *lxc.Client {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	if !installed(kind) {
		testenv.Missing(t, "%s is not installed (scripts/daemons.sh install %s)", kind, kind)
	}
	sh, err := script()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	acquire(t)
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	env := []string{}
	dir, err := writeWrapper()
	if err != nil {
		t.Fatal(err)
	}
	path = dir + ":" + path
	if idmapped {
		env = append(env, "FERRY_INCUS_IDMAPPED=1")
	}
	if pid := daemonPID(kind); pid > 0 && !envMatches(pid, kind, path, idmapped) {
		run(t, nil, sh, "stop", kind)
	}
	wasRunning := daemonPID(kind) > 0
	if err := runErr(append(env, "FERRY_DAEMON_PATH="+path), sh, "start", kind); err != nil {
		// Outside CI a daemon that cannot start skips; in CI it fails.
		testenv.Missing(t, "cannot start the %s daemon: %v", kind, err)
	}
	if !wasRunning {
		started[kind] = true
	}
	return &lxc.Client{Host: host.Local{}, Kind: kind}
}

// envMatches reports whether the running daemon has the PATH and idmapped
// setting wanted.
func envMatches(pid int, kind, path string, idmapped bool) bool {
	env := daemonEnv(pid)
	if !strings.HasPrefix(env["PATH"], path) {
		return false
	}
	if kind == migrate.KindIncus {
		return (env["INCUS_IDMAPPED_MOUNTS_DISABLE"] == "1") != idmapped
	}
	return true
}

func run(t testing.TB, env []string, argv ...string) {
	t.Helper()
	if err := runErr(env, argv...); err != nil {
		t.Fatal(err)
	}
}

func runErr(env []string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// Teardown stops the daemons this process started. Call it from TestMain
// after m.Run.
func Teardown() {
	mu.Lock()
	defer mu.Unlock()
	sh, err := script()
	if err != nil {
		return
	}
	for kind := range started {
		_ = exec.Command(sh, "stop", kind).Run()
		delete(started, kind)
	}
	if len(started) == 0 {
		_ = os.RemoveAll(WrapperDir)
		_ = os.Remove(filepath.Dir(WrapperDir)) // only when empty
	}
	if lock != nil {
		lock.Close() // releases the flock
		lock = nil
	}
}

// Config is the configuration a test container gets.
type Config int

const (
	// Stock is the daemon's default container (Incus gets
	// migration.stateful=true, without which it refuses stateful
	// operations).
	Stock Config = iota
	// NoConsole avoids the known console failure: raw.lxc with
	// lxc.console.path = none and an empty AppArmor profile (CRIU would
	// otherwise be asked for an apparmor LSM this kernel lacks). For LXD
	// 5.0.2 an autodev hook also puts a placeholder file at /dev/console:
	// liblxc 5.0.2 stats it before every dump (see WrapperDir).
	NoConsole
)

// RawLXC is the raw.lxc of a configuration for a kind.
func RawLXC(kind string, cfg Config) string {
	if cfg == Stock {
		return ""
	}
	lines := []string{"lxc.console.path = none", "lxc.apparmor.profile ="}
	if kind == migrate.KindLXD {
		lines = append(lines, "lxc.hook.autodev = touch ${LXC_ROOTFS_MOUNT}/dev/console")
	}
	return strings.Join(lines, "\n")
}

// Name returns a fresh container name.
func Name(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Launch creates and starts a busybox container and deletes it when the test
// ends.
func Launch(t testing.TB, c *lxc.Client, name string, cfg Config) {
	t.Helper()
	image, ref := Image, name
	if c.Remote != "" {
		image, ref = c.Remote+":"+Image, c.Remote+":"+name
	}
	args := []string{"launch", image, ref}
	if c.Kind == migrate.KindIncus {
		args = append(args, "-c", "migration.stateful=true")
	}
	if raw := RawLXC(c.Kind, cfg); raw != "" {
		args = append(args, "-c", "raw.lxc="+raw)
	}
	Delete(t, c, name)
	if _, err := c.Host.Run(context.Background(), append([]string{bin(c)}, args...), host.RunOptions{Env: c.Env}); err != nil {
		t.Fatalf("launch %s: %v", name, err)
	}
}

// Delete deletes the container (forced) when the test ends.
func Delete(t testing.TB, c *lxc.Client, name string) {
	t.Cleanup(func() {
		ref := name
		if c.Remote != "" {
			ref = c.Remote + ":" + name
		}
		_, _ = c.Host.Run(context.Background(), []string{bin(c), "delete", "--force", ref}, host.RunOptions{Timeout: time.Minute, Env: c.Env})
		if c.Remote == "" || c.LogRoot != "" {
			// The daemons keep a deleted instance's log directory.
			for _, d := range c.LogDirs(name) {
				_ = os.RemoveAll(d)
			}
		}
		if c.Remote == "" && c.Kind == migrate.KindIncus {
			_ = os.RemoveAll("/run/incus/" + name)
		}
		// Each CRIU restore leaves empty cgroups behind (NAME-1, ... when
		// a failed restore found NAME taken); rmdir removes only empty
		// ones.
		for _, pat := range []string{
			"/sys/fs/cgroup/*/lxc.payload." + name, "/sys/fs/cgroup/*/lxc.monitor." + name,
			"/sys/fs/cgroup/*/lxc.payload." + name + "-[0-9]*", "/sys/fs/cgroup/*/lxc.monitor." + name + "-[0-9]*",
		} {
			ds, _ := filepath.Glob(pat)
			for _, d := range ds {
				removeEmptyTree(d)
			}
		}
	})
}

func bin(c *lxc.Client) string {
	if c.Bin != "" {
		return c.Bin
	}
	if c.Kind == migrate.KindIncus {
		return "incus"
	}
	return "lxc"
}

// counterScript counts in /tmp/c, five times a second; detached from the
// exec session (its own session, stdio on /dev/null) so CRIU can dump it.
const counterScript = `setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.2; done' </dev/null >/dev/null 2>&1 &`

// StartCounter starts the counter process inside the container.
func StartCounter(t testing.TB, c *lxc.Client, name string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), name, "sh", "-c", counterScript); err != nil {
		t.Fatalf("start the counter in %s: %v", name, err)
	}
	// Let it write a first value.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := Counter(context.Background(), c, name); err == nil && n > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the counter in %s never wrote /tmp/c", name)
}

// Counter reads the counter's value.
func Counter(ctx context.Context, c *lxc.Client, name string) (int, error) {
	// The counter rewrites /tmp/c with `echo $i > /tmp/c`: a read between
	// the truncation and the write sees an empty file. Read again then.
	for try := 0; ; try++ {
		res, err := c.Exec(ctx, name, "cat", "/tmp/c")
		if err != nil {
			return 0, err
		}
		v := strings.TrimSpace(string(res.Stdout))
		if v == "" && try < 5 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return strconv.Atoi(v)
	}
}

// CounterCarriesOn returns a check that the counter is at least min and
// still counting: a restarted counter would have started from 1, a lost one
// would stand still.
func CounterCarriesOn(min int) func(ctx context.Context, c *lxc.Client, name string) error {
	return func(ctx context.Context, c *lxc.Client, name string) error {
		a, err := Counter(ctx, c, name)
		if err != nil {
			return err
		}
		if a < min {
			return fmt.Errorf("counter is %d, below %d before the operation: the process restarted", a, min)
		}
		time.Sleep(700 * time.Millisecond)
		b, err := Counter(ctx, c, name)
		if err != nil {
			return err
		}
		if b <= a {
			return fmt.Errorf("counter stands at %d: the process no longer runs", b)
		}
		return nil
	}
}

// removeEmptyTree removes a directory tree of empty cgroups, deepest first;
// a cgroup that still holds a process stays.
func removeEmptyTree(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}
