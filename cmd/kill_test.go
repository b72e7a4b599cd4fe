package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
)

func init() { testenv.HoldMemoryIfAsked() }

// TestKilledMidDump kills ferry with SIGKILL while CRIU dumps a 512 MiB
// process: the workload must keep running (CRIU resumes what it froze when
// its client goes away), nothing of CRIU may be left behind, and
// `ferry runs recover` closes the run.
func TestKilledMidDump(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.CRIU(t)
	ferry := testenv.FerryBinary(t)
	runs := t.TempDir()
	t.Setenv("FERRY_RUNS", runs)

	// A 512 MiB workload: its dump takes long enough to be interrupted.
	pid := testenv.StartHolder(t, 512).Process.Pid

	f := exec.Command(ferry, "checkpoint", "pid:"+strconv.Itoa(pid), "--dir", filepath.Join(t.TempDir(), "ckpt"), "--leave-running")
	// CRIU inherits ferry's environment: the marker finds this test's criu
	// among others the parallel test packages may run.
	mark := "FERRY_TEST_MARK=" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	f.Env = append(os.Environ(), "FERRY_RUNS="+runs, mark)
	tablesBefore := criuTables()
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill ferry once CRIU has started writing memory: its log exists and
	// the workload is frozen.
	var logPath string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, _ := filepath.Glob(filepath.Join(runs, "*", "dump.log"))
		if len(m) == 1 {
			if b, _ := os.ReadFile(m[0]); strings.Contains(string(b), "Seized task") || strings.Contains(string(b), "Dumping pages") {
				logPath = m[0]
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if logPath == "" {
		t.Fatal("CRIU never started dumping")
	}
	_ = f.Process.Signal(syscall.SIGKILL)
	_ = f.Wait()

	// CRIU notices its client is gone, fails the dump and resumes the tree.
	for i := 0; i < 500 && (criuAlive(mark) || migrate.ProcState(pid) == "t" || migrate.ProcState(pid) == "T"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if st := migrate.ProcState(pid); st != "S" && st != "R" {
		t.Fatalf("workload state %q after ferry was killed, want running", st)
	}
	if criuAlive(mark) {
		t.Error("a criu process outlived the killed ferry")
	}

	id := filepath.Base(filepath.Dir(logPath))
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "Dumping finished successfully") {
		t.Fatal("the dump finished before ferry was killed: the test did not interrupt it")
	}
	var before migrate.Journal
	if code, _ := runJSON(t, &before, "runs", "show", id); code != exit.OK || before.Result != migrate.RunRunning {
		t.Fatalf("journal of the killed run: exit %d result %q, want running", code, before.Result)
	}
	var j migrate.Journal
	code, stderr := runJSON(t, &j, "runs", "recover", id)
	if code != exit.OK || j.Result != migrate.RunRecovered {
		t.Fatalf("recover: exit %d result %q: %s", code, j.Result, stderr)
	}
	for _, s := range j.Steps {
		if s.Result == migrate.StepRunning {
			t.Errorf("step %s still marked running after recover", s.Name)
		}
	}
	for tb := range criuTables() {
		if !tablesBefore[tb] {
			t.Errorf("CRIU lock table left behind: %s", tb)
		}
	}
}

// criuAlive reports whether a criu process carrying mark in its
// environment runs.
func criuAlive(mark string) bool {
	for _, pid := range migrate.CRIUProcesses() {
		env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == mark {
				return true
			}
		}
	}
	return false
}

func criuTables() map[string]bool {
	out, _ := exec.Command("nft", "list", "tables").Output()
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "CRIU-") {
			m[strings.TrimSpace(l)] = true
		}
	}
	return m
}
