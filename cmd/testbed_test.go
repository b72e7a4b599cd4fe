package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/testbed"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
	}{
		{"64M", 64 << 20}, {"64MiB", 64 << 20}, {"64mb", 64 << 20}, {"1G", 1 << 30}, {"4096K", 4 << 20}, {"4096", 4096},
		{"", -1}, {"M", -1}, {"-1M", -1}, {"0", -1}, {"1T", -1}, {"lots", -1},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestTestbedUsage(t *testing.T) {
	// Nothing here may reach a real testbed.
	t.Setenv(testbed.DirEnv, t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"testbed", "run", "tb1"}, "requires at least 2"},
		{[]string{"testbed", "run", "tb1", "w"}, "nothing to run"},
		{[]string{"testbed", "run", "tb1", "w", "mem", "--", "/bin/x"}, "before --"},
		{[]string{"testbed", "run", "tb1", "w", "--"}, "no command after --"},
		{[]string{"testbed", "run", "tb1", "w", "mem", "--memory", "lots"}, `size "lots"`},
		{[]string{"testbed", "verify"}, "accepts 1 arg"},
		{[]string{"testbed", "up", "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			io, _, errOut := testIO()
			if code := Run(context.Background(), tt.args, io); code != exit.Usage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exit.Usage, errOut)
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut)
			}
		})
	}
}

// TestTestbedCommands drives the testbed through the CLI as a user would,
// one ferry invocation per step, on a testbed of its own.
func TestTestbedCommands(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	testenv.CRIU(t)
	exe := testenv.FerryBinary(t)
	ferry := ownTestbed(t, "c")
	h1 := os.Getenv(testbed.PrefixEnv) + "1"

	steps := []struct {
		args     []string
		wantCode int
		want     string // in stdout, or stderr when the command fails
	}{
		{[]string{"testbed", "status"}, 0, "testbed is down"},
		{[]string{"testbed", "ps"}, 1, "not up"},
		{[]string{"testbed", "up"}, 0, h1 + "  "},
		{[]string{"testbed", "up", "--hosts", "3"}, 1, "already up"},
		{[]string{"testbed", "run", h1, "m1", "mem", "--memory", "8M"}, 0, "m1"},
		{[]string{"testbed", "run", h1, "m1", "shm"}, 1, `a workload named "m1" already runs`},
		{[]string{"testbed", "run", h1, "cmd", "--", exe, "testbed", "__zoo", "pipes"}, 0, "/bin/ferry"},
		{[]string{"testbed", "verify", "m1"}, 0, "m1 on " + h1 + ": ok"},
		{[]string{"testbed", "verify", "cmd"}, 0, "no self-check"},
		{[]string{"testbed", "kill", "cmd"}, 0, ""},
		{[]string{"testbed", "verify", "cmd"}, 1, "no such workload"},
	}
	for _, s := range steps {
		code, out, errOut := ferry(s.args...)
		if code != s.wantCode {
			t.Fatalf("ferry %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.wantCode, out, errOut)
		}
		where := out
		if code != 0 {
			where = errOut
		}
		if !strings.Contains(where, s.want) {
			t.Errorf("ferry %s: output lacks %q:\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), s.want, out, errOut)
		}
	}

	code, out, errOut := ferry("testbed", "ps", "--output", "json")
	var ps testbed.PsList
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps.Workloads) != 1 || !ps.Workloads[0].Running {
		t.Fatalf("ps --output json: exit %d: %s %s", code, out, errOut)
	}

	// A stopped workload fails verify: exit 1 with the problem.
	if err := syscall.Kill(ps.Workloads[0].Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = ferry("testbed", "verify", "m1")
	syscall.Kill(ps.Workloads[0].Pid, syscall.SIGCONT)
	if code != exit.Failure || !strings.Contains(out, "problem: counter stuck") || !strings.Contains(errOut, "failed verification") {
		t.Errorf("verify of a stopped workload: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	code, out, _ = ferry("testbed", "status", "--output", "yaml")
	if code != 0 || !strings.Contains(out, "up: true") || !strings.Contains(out, "- m1") {
		t.Errorf("status --output yaml: exit %d:\n%s", code, out)
	}

	// Without root, up says what is missing.
	pub, err := os.MkdirTemp("", "ferry-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", exe, pub+"/ferry").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	nobody := exec.Command(pub+"/ferry", "testbed", "up")
	nobody.Env = append(os.Environ(), testbed.DirEnv+"="+t.TempDir())
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	msg, err := nobody.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(msg), "needs root privileges") || !strings.Contains(string(msg), "hint: run ferry testbed as root") {
		t.Errorf("up as nobody: %v\n%s", err, msg)
	}

	code, out, errOut = ferry("testbed", "down")
	if code != 0 || !strings.Contains(out, "removed workloads:  m1") {
		t.Errorf("down: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = ferry("testbed", "down"); code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("second down: exit %d\n%s", code, out)
	}
}

// ownTestbed points the testbed commands at a testbed of this test's own
// (directory, host prefix, a static ferry for the workloads) and takes it
// down when the test ends. It returns a function that runs ferry.
func ownTestbed(t testing.TB, prefix string) func(args ...string) (int, string, string) {
	t.Helper()
	exe := testenv.FerryBinary(t)
	dir := t.TempDir()
	// Workloads open a device node in their rootfs: not on a nodev /tmp.
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil && fs.Flags&unix.ST_NODEV != 0 {
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "ferry-testbed-cmd-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	t.Setenv(testbed.DirEnv, dir)
	t.Setenv(testbed.PrefixEnv, fmt.Sprintf("%s%d", prefix, os.Getpid()%10000))
	t.Setenv(testbed.ExeEnv, exe)
	t.Setenv("FERRY_RUNS", t.TempDir())
	ferry := func(args ...string) (int, string, string) {
		io, out, errOut := testIO()
		code := Run(context.Background(), args, io)
		return code, out.String(), errOut.String()
	}
	t.Cleanup(func() {
		if code, _, errOut := ferry("testbed", "down"); code != 0 {
			t.Errorf("cleanup: down: exit %d: %s", code, errOut)
		}
	})
	return ferry
}
