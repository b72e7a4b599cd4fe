package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/remote"
)

// The counter workload: the test binary re-executed writes 1, 2, 3, ...
// into a file every 10 ms, holding some MiB of written memory.
// With counterTCPEnv it also sends each value as a line over one TCP
// connection to that address.
const (
	counterEnv    = "FERRY_TEST_COUNTER"
	counterMiBEnv = "FERRY_TEST_COUNTER_MIB"
	counterTCPEnv = "FERRY_TEST_COUNTER_TCP"
)

func init() { countIfAsked() }

func countIfAsked() {
	p := os.Getenv(counterEnv)
	if p == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv(counterMiBEnv))
	mem := make([]byte, n<<20+1)
	for i := range mem {
		mem[i] = byte(i)
	}
	var conn net.Conn
	if addr := os.Getenv(counterTCPEnv); addr != "" {
		var err error
		if conn, err = net.Dial("tcp", addr); err != nil {
			os.Exit(3)
		}
	}
	for i := 1; ; i++ {
		_ = os.WriteFile(p, []byte(strconv.Itoa(i)), 0o644)
		if conn != nil {
			fmt.Fprintf(conn, "%d\n", i)
		}
		mem[i%len(mem)]++
		time.Sleep(10 * time.Millisecond)
	}
}

// counter is a running counter workload.
type counter struct {
	cmd  *exec.Cmd
	file string
	done chan struct{} // closed once the process was reaped
}

// startCounter starts a counter in its own session, stdio on /dev/null,
// with cwd as its working directory and its file in dir; it is killed and
// reaped when the test ends.
func startCounter(t testing.TB, dir, cwd string, mib int, env ...string) *counter {
	t.Helper()
	c := &counter{file: filepath.Join(dir, "counter"), done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Dir = cwd
	c.cmd.Env = append(append(os.Environ(), counterEnv+"="+c.file, counterMiBEnv+"="+strconv.Itoa(mib)), env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.done })
	c.waitAbove(t, 0, "start")
	return c
}

func (c *counter) value() int {
	b, _ := os.ReadFile(c.file)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// waitAbove waits until the counter passes v: the workload counts.
func (c *counter) waitAbove(t testing.TB, v int, what string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n := c.value(); n > v+5 {
			return n
		}
	}
	t.Fatalf("%s: the counter in %s stays at %d (was %d)", what, c.file, c.value(), v)
	return 0
}

// gone says whether the source process died (ferry killed it).
func (c *counter) gone() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// sshBed is a namespaced sshd as the remote host, ferry's static binary
// as the one copied there, and ferry's directory there on a tmpfs of its
// own (empty as this machine sees it).
type sshBed struct {
	d         *hosttest.NamespacedSSHD
	remoteDir string
	hostFn    func(string) (host.Host, error)
	// copied is set once a run copied ferry to the remote.
	copied bool
}

// checkFerry checks a run's note about ferry's binary: the first run
// copies it, every later one finds it there.
func (b *sshBed) checkFerry(t *testing.T, note string) {
	t.Helper()
	want := "present at "
	if !b.copied {
		want = "copied to "
	}
	if !strings.HasPrefix(note, want+b.remoteDir+"/bin/ferry-") {
		t.Errorf("ferry on the remote: %q, want %s...", note, want)
	}
	b.copied = true
}

func newSSHBed(t testing.TB) *sshBed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	testenv.RequireCommand(t, "nft", "tar", "sha256sum")
	t.Setenv(remote.ExeEnv, testenv.FerryBinary(t))
	t.Setenv("FERRY_RUNS", t.TempDir())
	d := hosttest.StartNamespacedSSHD(t)
	b := &sshBed{d: d, remoteDir: filepath.Join(t.TempDir(), "ferry-remote")}
	if err := os.MkdirAll(b.remoteDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.MountTmpfs(t, b.remoteDir)
	b.hostFn = func(spec string) (host.Host, error) { return host.New(spec, host.WithSSHOptions(d.Options)) }
	return b
}

// ferry runs ferry with the output as a journal.
func (b *sshBed) ferry(t testing.TB, args ...string) (int, migrate.Journal, string) {
	t.Helper()
	return b.ferryCtx(context.Background(), t, args...)
}

// ferryCtx runs ferry as the user would, interrupting it when ctx ends.
func (b *sshBed) ferryCtx(ctx context.Context, t testing.TB, args ...string) (int, migrate.Journal, string) {
	t.Helper()
	streams, stdout, stderr := testIO()
	f := NewFactory(streams)
	f.Host = b.hostFn
	root := NewRootCmd(f)
	root.SetArgs(append(args, "--output", "json", "--no-report", "--remote-dir", b.remoteDir))
	err := root.ExecuteContext(ctx)
	if err != nil {
		err = classify(err)
		printError(streams.ErrOut, err)
	}
	code, out, errOut := exit.CodeOf(err), stdout.String(), stderr.String()
	var j migrate.Journal
	if out != "" {
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatalf("%v: stdout is not a journal: %v\n%s", args, err, out)
		}
	}
	return code, j, errOut
}

// remote runs argv on the remote host, in its namespaces.
func (b *sshBed) remote(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := b.d.Run(t, argv...)
	if err != nil {
		t.Fatalf("%s on the remote: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

// assertClean checks that the remote keeps nothing of the runs but ferry's
// binary (one) and the moved trees: no images, no CRIU lock table, no
// criu process.
func (b *sshBed) assertClean(t *testing.T) {
	t.Helper()
	if out := b.remote(t, "find", b.remoteDir, "-mindepth", "1", "-not", "-path", b.remoteDir+"/bin*", "-not", "-path", b.remoteDir+"/remote"); strings.TrimSpace(out) != "" {
		t.Errorf("left on the remote:\n%s", out)
	}
	if bins := strings.Fields(b.remote(t, "ls", filepath.Join(b.remoteDir, "bin"))); len(bins) != 1 || !strings.HasPrefix(bins[0], "ferry-") {
		t.Errorf("ferry binaries on the remote: %v", bins)
	}
	if out := b.remote(t, "nft", "list", "tables"); strings.Contains(out, "CRIU-") {
		t.Errorf("CRIU lock table left on the remote:\n%s", out)
	}
	if left := criuProcesses(b.remote(t, "ps", "-e", "-o", "args=")); len(left) > 0 {
		t.Errorf("criu processes left on the remote:\n%s", strings.Join(left, "\n"))
	}
	if ents, _ := os.ReadDir(b.remoteDir); len(ents) != 0 {
		t.Errorf("the remote's directory shows on this machine: %v", ents)
	}
}

// movedTo checks that the tree with pid (its own, kept by CRIU) runs in
// the remote's pid namespace and counts there.
func (b *sshBed) movedTo(t *testing.T, c *counter, pid int, what string) {
	t.Helper()
	hp := b.d.HostPID(pid)
	if hp == 0 {
		t.Fatalf("%s: no pid %d in the remote's pid namespace", what, pid)
	}
	killAtEnd(t, hp)
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", hp)); strings.Contains(string(st), ") Z") {
		t.Fatalf("%s: the restored tree is a zombie", what)
	}
	c.waitAbove(t, c.value(), what+": on the remote")
}

// assertNoRunTables checks that this machine keeps no CRIU lock table of
// the run's CRIU dump and restores (other tests' tables are theirs).
func assertNoRunTables(t *testing.T, j migrate.Journal) {
	t.Helper()
	dir := migrate.Store{Dir: os.Getenv("FERRY_RUNS")}.RunDir(j.ID)
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
	var ids []string
	for _, l := range append(logs, more...) {
		b, _ := os.ReadFile(l)
		for _, line := range strings.SplitN(string(b), "\n", 8) {
			if _, id, ok := strings.Cut(line, "CRIU run id = "); ok {
				ids = append(ids, strings.TrimSpace(id))
			}
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no CRIU run id in the logs of %s", dir)
	}
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v %s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		name, ok := strings.CutPrefix(f, "CRIU-")
		for _, id := range ids {
			if ok && name != "" && strings.HasPrefix(id, name) {
				t.Errorf("CRIU lock table %s of run %s left here", f, j.ID)
			}
		}
	}
}

// hiddenOnRemote is a directory that exists here but not on the remote
// (a tmpfs there hides its parent).
func hiddenOnRemote(t *testing.T, b *sshBed) string {
	t.Helper()
	hidden := t.TempDir()
	cwd := filepath.Join(hidden, "work")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	b.d.MountTmpfs(t, hidden)
	return cwd
}

// stepTimes lists the steps' durations ("freeze-dump 50ms transfer ...").
func stepTimes(j migrate.Journal) string {
	var parts []string
	for _, s := range j.Steps {
		parts = append(parts, s.Name+" "+s.Duration.Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

// assertNoImages checks that the run's local images are gone: moved, or
// not needed after a clean rollback.
func assertNoImages(t *testing.T, j migrate.Journal) {
	t.Helper()
	if _, err := os.Stat(j.ImagesDir); j.ImagesDir == "" || err == nil {
		t.Errorf("images left in %q", j.ImagesDir)
	}
}

// killAtEnd kills a moved tree (pid as this machine sees it) when the test
// ends: it writes into the test's directories, so it goes before they do
// (sshd, its init on the remote, reaps it).
func killAtEnd(t testing.TB, hp int) {
	t.Cleanup(func() {
		_ = syscall.Kill(hp, syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", hp)); err != nil {
				return
			}
		}
		t.Errorf("the moved tree (pid %d here) does not die", hp)
	})
}

func stepNote(j migrate.Journal, step, key string) string {
	for _, s := range j.Steps {
		if s.Name == step {
			return s.Notes[key]
		}
	}
	return ""
}

// TestSSHRemote restores and migrates process trees onto a "remote" host
// reached over SSH (an sshd in its own network, mount and pid namespaces):
// ferry copies itself there once, CRIU runs there through ferry's agent,
// and the tree keeps counting there; a failed move leaves the source
// counting and nothing on the remote.
func TestSSHRemote(t *testing.T) {
	b := newSSHBed(t)
	spec := b.d.Spec

	t.Run("restore", func(t *testing.T) {
		c := startCounter(t, t.TempDir(), t.TempDir(), 0)
		pid := c.cmd.Process.Pid
		images := filepath.Join(t.TempDir(), "images")
		if code, out, errOut := runWith(t, b.hostFn, "checkpoint", fmt.Sprintf("pid:%d", pid), "--dir", images, "--no-report"); code != exit.OK {
			t.Fatalf("checkpoint: exit %d\n%s%s", code, out, errOut)
		}
		if !c.gone() {
			t.Fatalf("pid %d still runs after the checkpoint", pid)
		}
		code, j, errOut := b.ferry(t, "restore", "--dir", images, "--on", spec)
		if code != exit.OK || j.Result != migrate.RunOK {
			t.Fatalf("restore --on %s: exit %d, %s\n%s", spec, code, j.Result, errOut)
		}
		if j.Target != fmt.Sprintf("pid:%d", pid) || j.Workload != fmt.Sprintf("pid:%d on %s", pid, spec) {
			t.Errorf("journal: target %q, workload %q", j.Target, j.Workload)
		}
		var names []string
		for _, s := range j.Steps {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, " "); got != "preflight copy restore cleanup verify" {
			t.Errorf("steps: %s", got)
		}
		note := stepNote(j, remote.StepCopy, "ferry")
		b.checkFerry(t, note)
		t.Logf("restore: ferry %s; restore step %s", note, j.Steps[2].Duration)
		b.movedTo(t, c, pid, "restore")
		b.assertClean(t)
	})

	t.Run("restore-failure", func(t *testing.T) {
		cwd := hiddenOnRemote(t, b)
		c := startCounter(t, t.TempDir(), cwd, 0)
		images := filepath.Join(t.TempDir(), "images")
		if code, out, errOut := runWith(t, b.hostFn, "checkpoint", fmt.Sprintf("pid:%d", c.cmd.Process.Pid), "--dir", images, "--no-report"); code != exit.OK {
			t.Fatalf("checkpoint: exit %d\n%s%s", code, out, errOut)
		}
		code, j, errOut := b.ferry(t, "restore", "--dir", images, "--on", spec)
		if code != exit.Migration || j.Result != migrate.RunFailed || !strings.Contains(errOut, "must exist on "+spec+" at the same paths") || strings.Count(errOut, "the CRIU log is") != 1 {
			t.Fatalf("restore of a tree whose cwd is missing there: exit %d, %s\n%s", code, j.Result, errOut)
		}
		t.Logf("stderr:\n%s", errOut)
		var got []string
		for _, s := range j.Steps {
			got = append(got, s.Name+":"+s.Result)
		}
		if want := "preflight:ok copy:ok restore:failed cleanup:ok"; strings.Join(got, " ") != want {
			t.Errorf("steps %s, want %s", strings.Join(got, " "), want)
		}
		b.checkFerry(t, stepNote(j, remote.StepCopy, "ferry"))
		if j.Steps[2].Log == "" || len(j.Steps[2].Lifted) == 0 {
			t.Errorf("restore step without the remote's log or its lifted lines: %+v", j.Steps[2])
		}
		b.assertClean(t)
	})

	for _, mode := range []string{migrate.ModeStopCopy, migrate.ModePageServer} {
		t.Run(mode, func(t *testing.T) {
			c := startCounter(t, t.TempDir(), t.TempDir(), 64)
			pid := c.cmd.Process.Pid
			args := []string{"migrate", fmt.Sprintf("pid:%d", pid), "--to", spec, "--mode", mode}
			if mode == migrate.ModePageServer {
				// The stop-copy run checked compatibility already.
				args = append(args, "--skip-check", "--page-server-port", "27999")
			}
			code, j, errOut := b.ferry(t, args...)
			if code != exit.OK || j.Result != migrate.RunOK {
				t.Fatalf("migrate --mode %s: exit %d, %s\n%s", mode, code, j.Result, errOut)
			}
			if !c.gone() {
				t.Errorf("the source pid %d still runs", pid)
			}
			for _, st := range j.Steps {
				if st.Name == migrate.StepRestore {
					if _, err := os.Stat(filepath.Join(migrate.Store{Dir: os.Getenv("FERRY_RUNS")}.RunDir(j.ID), st.Log)); st.Log == "" || err != nil {
						t.Errorf("the remote's restore log %q was not fetched: %v", st.Log, err)
					}
				}
			}
			note := stepNote(j, migrate.StepTransfer, "ferry")
			b.checkFerry(t, note)
			if ps, want := stepNote(j, migrate.StepTransfer, "page_server"), b.d.Addr+":27999"; (mode == migrate.ModePageServer) != (ps == want) {
				t.Errorf("page server %q (mode %s, want %s in page-server mode)", ps, mode, want)
			}
			_, err := os.Stat(filepath.Join(migrate.Store{Dir: os.Getenv("FERRY_RUNS")}.RunDir(j.ID), "page-server.log"))
			if (mode == migrate.ModePageServer) != (err == nil) {
				t.Errorf("the page server's log in the run directory: %v (mode %s)", err, mode)
			}
			t.Logf("%s, 64 MiB: downtime %s (frozen %s, %d pages written, restore %s); steps: %s; ferry %s",
				mode, j.Stats.Downtime, j.Stats.FrozenTime, j.Stats.PagesWritten, j.Stats.RestoreTime, stepTimes(j), note)
			b.movedTo(t, c, pid, mode)
			b.assertClean(t)
			assertNoImages(t, j)
		})
	}

	t.Run("failure", func(t *testing.T) {
		// The tree's working directory exists here but not on the
		// remote: its files are the user's business, and CRIU there
		// cannot restore it.
		cwd := hiddenOnRemote(t, b)
		c := startCounter(t, t.TempDir(), cwd, 0)
		pid := c.cmd.Process.Pid
		code, j, errOut := b.ferry(t, "migrate", fmt.Sprintf("pid:%d", pid), "--to", spec, "--skip-check")
		if code != exit.Migration || j.Result != migrate.RunRolledBack {
			t.Fatalf("migrate with a missing cwd: exit %d, %s\n%s", code, j.Result, errOut)
		}
		t.Logf("stderr:\n%s", errOut)
		last := j.Steps[len(j.Steps)-1]
		if last.Name != migrate.StepRollback || last.Result != migrate.StepOK {
			t.Errorf("last step %s %s", last.Name, last.Result)
		}
		var restore migrate.Step
		for _, s := range j.Steps {
			if s.Name == migrate.StepRestore {
				restore = s
			}
		}
		if restore.Result != migrate.StepFailed || restore.Log == "" {
			t.Errorf("restore step: %+v", restore)
		} else if _, err := os.Stat(filepath.Join(migrate.Store{Dir: os.Getenv("FERRY_RUNS")}.RunDir(j.ID), restore.Log)); err != nil {
			t.Errorf("the remote's restore log was not fetched: %v", err)
		}
		b.checkFerry(t, stepNote(j, migrate.StepTransfer, "ferry"))
		if !strings.Contains(errOut, "must exist on "+spec+" at the same paths") || strings.Count(errOut, "the CRIU log is") != 1 {
			t.Errorf("hints:\n%s", errOut)
		}
		select {
		case <-c.done:
			t.Fatalf("the source died")
		default:
		}
		c.waitAbove(t, c.value(), "after the rollback, on the source")
		if b.d.HostPID(pid) != 0 {
			t.Errorf("pid %d runs on the remote", pid)
		}
		b.assertClean(t)
		assertNoImages(t, j)
	})

	t.Run("interrupted", func(t *testing.T) {
		// The user interrupts once the images reach the remote: the
		// transfer ends, then the move rolls back.
		c := startCounter(t, t.TempDir(), t.TempDir(), 64)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			defer cancel()
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				out, _ := b.d.Run(t, "find", filepath.Join(b.remoteDir, "remote"), "-name", "*.img")
				if strings.Contains(out, ".img") {
					return
				}
			}
		}()
		code, j, errOut := b.ferryCtx(ctx, t, "migrate", fmt.Sprintf("pid:%d", c.cmd.Process.Pid), "--to", spec, "--skip-check")
		if code != exit.Migration || j.Result != migrate.RunRolledBack || !strings.Contains(errOut, "interrupted") {
			t.Fatalf("interrupted migrate: exit %d, %s\n%s", code, j.Result, errOut)
		}
		t.Logf("interrupted in: %s", stepTimes(j))
		c.waitAbove(t, c.value(), "after the interrupt, on the source")
		b.assertClean(t)
		assertNoImages(t, j)
	})

	t.Run("link-cut", func(t *testing.T) {
		// The link to the target goes down while pages stream to its
		// page server: the guard breaks the stalled transfer, CRIU fails
		// the dump and resumes the tree, and once the link is back the
		// target is cleaned.
		defer func(d time.Duration) { remote.StallTimeout = d }(remote.StallTimeout)
		remote.StallTimeout = 3 * time.Second
		c := startCounter(t, t.TempDir(), t.TempDir(), 256)
		runs := os.Getenv("FERRY_RUNS")
		before := mustGlob(t, filepath.Join(runs, "*"))
		cut := make(chan struct{})
		go func() {
			defer close(cut)
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				logs, _ := filepath.Glob(filepath.Join(runs, "*", "dump.log"))
				for _, l := range logs {
					if contains(before, filepath.Dir(l)) {
						continue
					}
					if data, _ := os.ReadFile(l); strings.Contains(string(data), "page-xfer") || strings.Contains(string(data), "Dumping pages") {
						_ = exec.Command("ip", "link", "set", b.d.Link, "down").Run()
						// Back once the guard had its chance, so that
						// the rollback reaches the target.
						time.Sleep(remote.StallTimeout + 2*time.Second)
						_ = exec.Command("ip", "link", "set", b.d.Link, "up").Run()
						return
					}
				}
			}
		}()
		code, j, errOut := b.ferry(t, "migrate", fmt.Sprintf("pid:%d", c.cmd.Process.Pid), "--to", spec, "--mode", migrate.ModePageServer,
			"--skip-check", "--page-server-port", "27998")
		<-cut
		if code != exit.Migration || j.Result == migrate.RunOK || !strings.Contains(errOut, "stalled") {
			t.Fatalf("migrate with the link cut: exit %d, %s; want 4 and the stall named\n%s", code, j.Result, errOut)
		}
		t.Logf("link cut: %s", stepTimes(j))
		c.waitAbove(t, c.value(), "after the link cut, on the source")
		b.assertClean(t)
	})

	t.Run("recover", func(t *testing.T) {
		// ferry died mid-move (SIGKILL, a reboot): the target holds the
		// run's directory and a page server, the source tree is left
		// stopped. `ferry runs recover` cleans the target and continues
		// the tree here.
		c := startCounter(t, t.TempDir(), t.TempDir(), 16)
		pid := c.cmd.Process.Pid
		store := migrate.Store{Dir: os.Getenv("FERRY_RUNS")}
		run, err := store.Create("migrate", time.Now(), migrate.Journal{Target: fmt.Sprintf("pid:%d", pid), Source: "local", Dest: spec})
		if err != nil {
			t.Fatal(err)
		}
		h, err := b.hostFn(spec)
		if err != nil {
			t.Fatal(err)
		}
		p := &remote.Placement{Source: host.Local{}, Dest: h, PID: pid, Mode: migrate.ModePageServer, Exe: testenv.FerryBinary(t),
			Dir: b.remoteDir, PageServerAddress: b.d.Addr, PageServerPort: 27997, CRIU: testenv.CRIU(t).Path}
		if _, err := p.Prepare(context.Background(), store.RunDir(run.ID())); err != nil {
			t.Fatal(err)
		}
		if ps := criuProcesses(b.remote(t, "ps", "-e", "-o", "args=")); len(ps) != 1 || !strings.Contains(ps[0], "page-server") {
			t.Fatalf("no page server on the remote after Prepare: %q", ps)
		}
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		_ = run.Update(func(j *migrate.Journal) {
			j.Steps = append(j.Steps, migrate.Step{Name: migrate.StepDump, Host: "local", Start: time.Now(), Result: migrate.StepRunning})
		})
		b.copied = true
		code, out, errOut := runWith(t, b.hostFn, "runs", "recover", run.ID(), "--output", "json")
		var j migrate.Journal
		if code != exit.OK || json.Unmarshal([]byte(out), &j) != nil || j.Result != migrate.RunRecovered {
			t.Fatalf("runs recover: exit %d\n%s%s", code, out, errOut)
		}
		last := j.Steps[len(j.Steps)-1]
		if !strings.Contains(last.Notes["target"], "killed its page server") {
			t.Errorf("recover step notes %v", last.Notes)
		}
		c.waitAbove(t, c.value(), "after recover, on the source")
		b.assertClean(t)
	})

	t.Run("tcp-rollback", func(t *testing.T) {
		// A tree with an established connection cannot be continued
		// after a failed move (CRIU put its socket in repair mode):
		// ferry restores it here from the images, on the same
		// connection.
		testenv.BecomeSubreaper(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var (
			mu      sync.Mutex
			last    int
			accepts int
		)
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				accepts++
				mu.Unlock()
				go func() {
					defer conn.Close()
					sc := bufio.NewScanner(conn)
					for sc.Scan() {
						n, _ := strconv.Atoi(sc.Text())
						mu.Lock()
						last = n
						mu.Unlock()
					}
				}()
			}
		}()
		lastLine := func() int { mu.Lock(); defer mu.Unlock(); return last }
		c := startCounter(t, t.TempDir(), hiddenOnRemote(t, b), 0, counterTCPEnv+"="+l.Addr().String())
		pid := c.cmd.Process.Pid
		t.Cleanup(func() {
			// The tree restored here is the test's (a subreaper) child.
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(pid, &ws, 0, nil)
			}
		})
		code, j, errOut := b.ferry(t, "migrate", fmt.Sprintf("pid:%d", pid), "--to", spec, "--skip-check", "--tcp-established")
		if code != exit.Migration || j.Result != migrate.RunRolledBack {
			t.Fatalf("migrate --tcp-established with a missing cwd: exit %d, %s\n%s", code, j.Result, errOut)
		}
		if !c.gone() {
			t.Errorf("the stopped source was not replaced")
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z") || b.d.Owns(pid) {
			t.Fatalf("pid %d is not restored here: %v %s", pid, err, st)
		}
		c.waitAbove(t, c.value(), "restored on the source")
		before := lastLine()
		for deadline := time.Now().Add(20 * time.Second); lastLine() <= before+5 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		}
		mu.Lock()
		defer mu.Unlock()
		if last <= before+5 || accepts != 1 {
			t.Errorf("the connection did not carry on: last line %d (was %d), %d connections", last, before, accepts)
		}
		b.assertClean(t)
		assertNoRunTables(t, j)
		assertNoImages(t, j)
	})

	t.Run("refused", func(t *testing.T) {
		c := startCounter(t, t.TempDir(), t.TempDir(), 0)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--to", "local"}, "refusing to move it to itself"},
			{[]string{"--to", spec, "--mode", "lazy"}, "lazy migration is not supported"},
			{[]string{"--to", "testbed:tb9"}, "not supported"},
		} {
			code, _, errOut := b.ferry(t, append([]string{"migrate", fmt.Sprintf("pid:%d", c.cmd.Process.Pid)}, tc.args...)...)
			if code != exit.Usage || !strings.Contains(errOut, tc.want) {
				t.Errorf("migrate %v: exit %d\n%s", tc.args, code, errOut)
			}
		}
		c.waitAbove(t, c.value(), "untouched")
		if code, _, errOut := b.ferry(t, "restore", "lxd:c1", "--on", spec); code != exit.Usage || !strings.Contains(errOut, "not supported") {
			t.Errorf("restore lxd:c1 --on %s: exit %d\n%s", spec, code, errOut)
		}
	})
}

// BenchmarkMigrateSSH moves a counter holding 64 MiB of written memory to
// an sshd in its own namespaces (the remote host) in each mode, and reports
// the journal's downtime: from the start of the dump until the tree runs
// on the remote (the images or pages over SSH or to the page server, the
// restore through ferry's agent there).
//
//	go test -run '^$' -bench MigrateSSH -benchtime 5x ./cmd
func BenchmarkMigrateSSH(b *testing.B) {
	for _, mode := range []string{migrate.ModeStopCopy, migrate.ModePageServer} {
		b.Run("64MiB/"+mode, func(b *testing.B) {
			bed := newSSHBed(b)
			var down, frozen, transfer, restore time.Duration
			i := 0
			for b.Loop() {
				c := startCounter(b, b.TempDir(), b.TempDir(), 64)
				code, j, errOut := bed.ferry(b, "migrate", fmt.Sprintf("pid:%d", c.cmd.Process.Pid), "--to", bed.d.Spec, "--mode", mode, "--skip-check")
				if code != exit.OK || j.Stats == nil {
					b.Fatalf("migrate: exit %d\n%s", code, errOut)
				}
				if hp := bed.d.HostPID(c.cmd.Process.Pid); hp > 0 {
					killAtEnd(b, hp)
				}
				i++
				down += j.Stats.Downtime
				frozen += j.Stats.FrozenTime
				for _, st := range j.Steps {
					switch st.Name {
					case migrate.StepTransfer:
						transfer += st.Duration
					case migrate.StepRestore:
						restore += st.Duration
					}
				}
			}
			ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(i) }
			b.ReportMetric(ms(down), "downtime-ms/op")
			b.ReportMetric(ms(frozen), "frozen-ms/op")
			b.ReportMetric(ms(transfer), "transfer-ms/op")
			b.ReportMetric(ms(restore), "restore-ms/op")
		})
	}
}

// criuProcesses picks the criu processes from `ps -o args=` output: criu
// itself, or criu run by its own loader (the project's install runs
// `ld-linux-x86-64.so.2 ... /opt/ferry/criu/usr/sbin/criu`, whose comm
// is ld-linux-x86-64).
func criuProcesses(ps string) []string {
	var out []string
	for _, l := range strings.Split(ps, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if filepath.Base(f[0]) == "criu" || (strings.Contains(f[0], "ld-linux") && strings.Contains(l, "sbin/criu ")) {
			out = append(out, l)
		}
	}
	return out
}
