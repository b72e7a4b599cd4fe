package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/probe/probetest"
	"github.com/ferry-migrate/ferry/testbed"
)

func requireTestbed(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	testenv.CRIU(t)
}

// migrateJSON runs ferry migrate with --output json.
func migrateJSON(t *testing.T, ferry func(...string) (int, string, string), args ...string) (int, migrate.Journal, string) {
	t.Helper()
	code, out, errOut := ferry(append(append([]string{"migrate"}, args...), "--output", "json")...)
	var j migrate.Journal
	if out != "" {
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatalf("migrate %v: stdout is not a journal: %v\n%s", args, err, out)
		}
	}
	return code, j, errOut
}

// TestMigrateZoo moves every zoo workload between testbed hosts through
// ferry migrate, in both modes, and checks each one after the move: its
// counter continues, its memory is intact, the TCP connection from a client
// on a third host survives.
func TestMigrateZoo(t *testing.T) {
	requireTestbed(t)
	ferry := ownTestbed(t, "m")
	p := os.Getenv(testbed.PrefixEnv)
	h1, h2, h3 := p+"1", p+"2", p+"3"
	if code, _, errOut := ferry("testbed", "up", "--hosts", "3"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	workloads := [][]string{
		{"mem64", "mem", "--memory", "64M"},
		{"mem512", "mem", "--memory", "512M"},
		{"tcp", "tcp"}, {"threads", "threads"}, {"pipes", "pipes"}, {"files", "files"},
		{"fds", "fds"}, {"shm", "shm"}, {"tree", "tree"},
	}
	for _, w := range workloads {
		if code, _, errOut := ferry(append([]string{"testbed", "run", h1}, w...)...); code != 0 {
			t.Fatalf("run %s: %s", w[0], errOut)
		}
	}
	if code, _, errOut := ferry("testbed", "run", h3, "client", "tcp-client", "tcp", "--net", "host"); code != 0 {
		t.Fatalf("run client: %s", errOut)
	}
	verify := func(name string) {
		t.Helper()
		if code, out, errOut := ferry("testbed", "verify", name); code != 0 {
			t.Errorf("verify %s: exit %d\n%s%s", name, code, out, errOut)
		}
	}
	for _, w := range workloads {
		verify(w[0])
	}
	verify("client")

	for _, w := range workloads {
		code, j, errOut := migrateJSON(t, ferry, "testbed:"+w[0], "--to", "testbed:"+h2)
		if code != exit.OK {
			t.Fatalf("migrate %s: exit %d\n%s", w[0], code, errOut)
		}
		if j.Result != migrate.RunOK || j.Stats == nil || j.Stats.Downtime <= 0 || j.Stats.PagesWritten == 0 {
			t.Errorf("migrate %s: journal %+v", w[0], j)
		}
		t.Logf("%s: downtime %s (frozen %s, %d pages)", w[0], j.Stats.Downtime, j.Stats.FrozenTime, j.Stats.PagesWritten)
		verify(w[0])
	}
	verify("client")
	// Back again with memory over the page server.
	for _, name := range []string{"mem512", "tcp", "tree"} {
		code, j, errOut := migrateJSON(t, ferry, "testbed:"+name, "--to", "testbed:"+h1, "--mode", "page-server")
		if code != exit.OK {
			t.Fatalf("migrate %s --mode page-server: exit %d\n%s", name, code, errOut)
		}
		t.Logf("%s page-server: downtime %s", name, j.Stats.Downtime)
		verify(name)
	}
	verify("client")
	assertNoCRIULeftovers(t, h1, h2, h3)
}

// assertNoCRIULeftovers checks that no CRIU lock table is left in the
// hosts' namespaces.
func assertNoCRIULeftovers(t *testing.T, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		out, err := exec.Command("ip", "netns", "exec", "ferry-"+h, "nft", "list", "tables").CombinedOutput()
		if err != nil {
			t.Errorf("nft in %s: %v %s", h, err, out)
		}
		if strings.Contains(string(out), "CRIU-") {
			t.Errorf("CRIU lock table left in %s:\n%s", h, out)
		}
	}
}

// TestMigrateFailures breaks a migration at several points; each time the
// workload must still run and verify on its source, the target must be
// clean, and the exit code and journal must say what happened.
func TestMigrateFailures(t *testing.T) {
	requireTestbed(t)
	ferry := ownTestbed(t, "f")
	p := os.Getenv(testbed.PrefixEnv)
	h1, h2 := p+"1", p+"2"
	if code, _, errOut := ferry("testbed", "up", "--hosts", "2"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	for _, w := range [][]string{{"w", "mem", "--memory", "256M"}, {"tcp", "tcp"}} {
		if code, _, errOut := ferry(append([]string{"testbed", "run", h1}, w...)...); code != 0 {
			t.Fatalf("run %s: %s", w[0], errOut)
		}
	}
	if code, _, errOut := ferry("testbed", "run", h2, "client", "tcp-client", "tcp", "--net", "host"); code != 0 {
		t.Fatalf("run client: %s", errOut)
	}
	onSource := func(name string) {
		t.Helper()
		code, out, errOut := ferry("testbed", "verify", name)
		if code != 0 || !strings.Contains(out, name+" on "+h1+": ok") {
			t.Fatalf("after the failed move %s must run on %s: exit %d\n%s%s", name, h1, code, out, errOut)
		}
		rootfs, _ := filepath.Glob(filepath.Join(os.Getenv(testbed.DirEnv), "hosts", h2, "rootfs", name))
		if len(rootfs) > 0 {
			t.Errorf("the target kept a rootfs: %v", rootfs)
		}
	}
	onSource("w")

	t.Run("unknown workload", func(t *testing.T) {
		code, _, errOut := migrateJSON(t, ferry, "testbed:nope", "--to", "testbed:"+h2)
		if code != exit.Failure || !strings.Contains(errOut, "no such workload") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})

	t.Run("criu missing on the target", func(t *testing.T) {
		info := testenv.CRIU(t)
		wrapper := filepath.Join(t.TempDir(), "criu-missing-on-target")
		script := fmt.Sprintf("#!/bin/sh\nif [ \"$(ip netns identify)\" = \"ferry-%s\" ]; then echo 'criu: not found' >&2; exit 127; fi\nexec %s \"$@\"\n", h2, info.Path)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		code, j, errOut := migrateJSON(t, ferry, "testbed:w", "--to", "testbed:"+h2, "--criu", wrapper)
		if code != exit.Failure || !strings.Contains(errOut, "CRIU on the target") {
			t.Errorf("exit %d, want 1 with the cause: %s", code, errOut)
		}
		if len(j.Steps) != 1 || j.Steps[0].Name != migrate.StepPreflight {
			t.Errorf("more than the preflight ran: %+v", j.Steps)
		}
		onSource("w")
	})

	t.Run("restore fails on the target", func(t *testing.T) {
		// Take the workload's link name on the target: CRIU cannot
		// create its veth there.
		veth := workloadField(t, "w", "veth")
		if out, err := exec.Command("ip", "netns", "exec", "ferry-"+h2, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer exec.Command("ip", "netns", "exec", "ferry-"+h2, "ip", "link", "del", veth).Run()
		code, j, errOut := migrateJSON(t, ferry, "testbed:w", "--to", "testbed:"+h2)
		if code != exit.Migration || j.Result != migrate.RunRolledBack {
			t.Fatalf("exit %d result %q, want 4 rolled-back: %s", code, j.Result, errOut)
		}
		if !strings.Contains(errOut, "hint: ") || !strings.Contains(errOut, "ferry collect --run "+j.ID) {
			t.Errorf("no hints: %s", errOut)
		}
		// The bug-report bundle was made without being asked.
		if !strings.Contains(errOut, "hint: bug-report bundle: ") || !strings.Contains(errOut, "bundle-"+j.ID+".tar.gz") {
			t.Errorf("no bug-report bundle named: %s", errOut)
		}
		onSource("w")
	})

	t.Run("tcp workload restore fails: restored on its source", func(t *testing.T) {
		veth := workloadField(t, "tcp", "veth")
		if out, err := exec.Command("ip", "netns", "exec", "ferry-"+h2, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer exec.Command("ip", "netns", "exec", "ferry-"+h2, "ip", "link", "del", veth).Run()
		code, j, errOut := migrateJSON(t, ferry, "testbed:tcp", "--to", "testbed:"+h2)
		if code != exit.Migration || j.Result != migrate.RunRolledBack {
			t.Fatalf("exit %d result %q: %s", code, j.Result, errOut)
		}
		onSource("tcp")
		if code, out, errOut := ferry("testbed", "verify", "client"); code != 0 {
			t.Errorf("the TCP client lost its connection: %s%s", out, errOut)
		}
	})

	t.Run("link cut during the page-server transfer", func(t *testing.T) {
		runs := os.Getenv("FERRY_RUNS")
		port := "ferry-" + p + "-sw"
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Cut h2's link once CRIU streams pages.
			for i := 0; i < 3000; i++ {
				logs, _ := filepath.Glob(filepath.Join(runs, "*migrate*", "dump.log"))
				for _, l := range logs {
					if b, _ := os.ReadFile(l); strings.Contains(string(b), "page-xfer") || strings.Contains(string(b), "Dumping pages") {
						linkDown(t, port, h2)
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
		code, j, errOut := migrateJSON(t, ferry, "testbed:w", "--to", "testbed:"+h2, "--mode", "page-server")
		<-done
		linkUp(t, port, h2)
		if !strings.Contains(errOut, "stalled") {
			t.Errorf("the stalled transfer was not broken by ferry's guard: %s", errOut)
		}
		if code != exit.Migration || j.Result == migrate.RunOK {
			t.Fatalf("exit %d result %q, want a failed move: %s", code, j.Result, errOut)
		}
		onSource("w")
	})
	assertNoCRIULeftovers(t, h1, h2)
}

// hostLink is the switch-side link of testbed host h.
func hostLink(t *testing.T, sw, h string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", sw, "ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.Contains(f[1], h) {
			return strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
		}
	}
	t.Fatalf("no link for %s in %s:\n%s", h, sw, out)
	return ""
}

func linkDown(t *testing.T, sw, h string) {
	_ = exec.Command("ip", "netns", "exec", sw, "ip", "link", "set", hostLink(t, sw, h), "down").Run()
}

func linkUp(t *testing.T, sw, h string) {
	if out, err := exec.Command("ip", "netns", "exec", sw, "ip", "link", "set", hostLink(t, sw, h), "up").CombinedOutput(); err != nil {
		t.Errorf("link up: %v %s", err, out)
	}
}

// workloadField reads one field of a workload from the testbed's state.
func workloadField(t *testing.T, name, field string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(os.Getenv(testbed.DirEnv), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Workloads []map[string]any `json:"workloads"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Workloads {
		if w["name"] == name {
			return fmt.Sprint(w[field])
		}
	}
	t.Fatalf("no workload %s in the testbed state", name)
	return ""
}

// TestMigrateRefusesBlockers runs migrate's compatibility gate on captured
// hosts: a target whose CPU lacks the source's AVX-512 is refused with
// exit 3 and the flags named; --force only warns.
func TestMigrateRefusesBlockers(t *testing.T) {
	t.Parallel()
	src := &host.Dir{Root: probetest.Compose(t, "vm-6.18", "")}
	dst := &host.Dir{Root: probetest.Compose(t, "vm-6.18", "cpu-no-avx512")}
	io, _, errOut := testIO()
	err := compatible(context.Background(), "", src, dst, false, io)
	if exit.CodeOf(err) != exit.Incompatible || !strings.Contains(err.Error(), "avx512f") {
		t.Fatalf("err = %v (exit %d), want exit 3 naming avx512f", err, exit.CodeOf(err))
	}
	if len(exit.HintsOf(err)) < 2 {
		t.Errorf("hints = %q", exit.HintsOf(err))
	}
	if err := compatible(context.Background(), "", src, dst, true, io); err != nil {
		t.Errorf("--force: %v", err)
	}
	if !strings.Contains(errOut.String(), "warning: --force") {
		t.Errorf("--force did not warn: %s", errOut)
	}
	if err := compatible(context.Background(), "", src, &host.Dir{Root: probetest.Compose(t, "vm-6.18", "platform-flags")}, false, io); err != nil {
		t.Errorf("platform flags only: %v", err)
	}
}

func TestMigrateUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "incus:c1", "--to", "local"}, "needs --remote"},
		{[]string{"migrate", "pid:1", "--to", "testbed:tb2"}, "is not supported"},
		{[]string{"migrate", "testbed:w", "--to", "ssh://"}, "missing host name"},
		{[]string{"migrate", "testbed:w", "--to", "testbed:tb2", "--mode", "lazy"}, "lazy pages over the network fail"},
		{[]string{"migrate", "testbed:w"}, `required flag(s) "to" not set`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			io, _, errOut := testIO()
			if code := Run(context.Background(), tt.args, io); code != exit.Usage {
				t.Errorf("exit %d, want 2: %s", code, errOut)
			}
			if !strings.Contains(errOut.String(), tt.want) || !strings.Contains(errOut.String(), "hint: ") {
				t.Errorf("stderr lacks %q or a hint:\n%s", tt.want, errOut)
			}
		})
	}
}

// TestMigrateInterrupted sends SIGTERM (and in a second run SIGINT) to a
// real ferry while it dumps or transfers: the move must roll back, the
// workload must verify on its source, and the target must be clean.
func TestMigrateInterrupted(t *testing.T) {
	requireTestbed(t)
	ferry := ownTestbed(t, "i")
	exe := testenv.FerryBinary(t)
	p := os.Getenv(testbed.PrefixEnv)
	h1, h2 := p+"1", p+"2"
	if code, _, errOut := ferry("testbed", "up", "--hosts", "2"); code != 0 {
		t.Fatalf("up: %s", errOut)
	}
	if code, _, errOut := ferry("testbed", "run", h1, "w", "mem", "--memory", "512M"); code != 0 {
		t.Fatalf("run: %s", errOut)
	}
	if code, out, errOut := ferry("testbed", "verify", "w"); code != 0 {
		t.Fatalf("verify: %s%s", out, errOut)
	}
	runs := os.Getenv("FERRY_RUNS")
	for _, tc := range []struct {
		sig  syscall.Signal
		step string
	}{{syscall.SIGTERM, migrate.StepDump}, {syscall.SIGINT, migrate.StepTransfer}} {
		t.Run(tc.sig.String()+" during "+tc.step, func(t *testing.T) {
			cmd := exec.Command(exe, "migrate", "testbed:w", "--to", "testbed:"+h2, "--output", "json", "--no-report")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal once the journal shows the step running.
			sent := false
			for deadline := time.Now().Add(60 * time.Second); !sent && time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				js, _ := filepath.Glob(filepath.Join(runs, "*migrate*", "journal.json"))
				for _, jp := range js {
					var j migrate.Journal
					if b, err := os.ReadFile(jp); err == nil && json.Unmarshal(b, &j) == nil && j.Result == migrate.RunRunning {
						if n := len(j.Steps); n > 0 && j.Steps[n-1].Name == tc.step && j.Steps[n-1].Result == migrate.StepRunning {
							_ = cmd.Process.Signal(tc.sig)
							sent = true
						}
					}
				}
			}
			err := cmd.Wait()
			if !sent {
				t.Fatalf("never saw %s running; ferry: %v\n%s", tc.step, err, stderr.String())
			}
			var j migrate.Journal
			if jerr := json.Unmarshal([]byte(stdout.String()), &j); jerr != nil {
				t.Fatalf("stdout is not a journal (%v): %s\nstderr: %s", jerr, stdout.String(), stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exit.Migration || j.Result != migrate.RunRolledBack {
				t.Fatalf("exit %v, result %q; want 4 and rolled-back\n%s", err, j.Result, stderr.String())
			}
			if !strings.Contains(j.Error, "interrupted") {
				t.Errorf("journal error %q does not say it was interrupted", j.Error)
			}
			code, out, errOut := ferry("testbed", "verify", "w")
			if code != 0 || !strings.Contains(out, "w on "+h1+": ok") {
				t.Fatalf("after the interrupted move w must run on %s: %s%s", h1, out, errOut)
			}
			if left, _ := filepath.Glob(filepath.Join(os.Getenv(testbed.DirEnv), "hosts", h2, "rootfs", "*")); len(left) > 0 {
				t.Errorf("the target kept %v", left)
			}
			for _, jp := range mustGlob(t, filepath.Join(runs, "*", "journal.json")) {
				os.Rename(jp, jp+".done") // the next case looks for its own run
			}
		})
	}
	assertNoCRIULeftovers(t, h1, h2)
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
