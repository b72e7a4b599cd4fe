package criu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
)

// The benchmark workload is this test binary re-executed: it fills 64 MiB
// and sleeps, in its own session with stdio on /dev/null.
const holderEnv = "FERRY_BENCH_HOLD_MIB"

func init() {
	if v := os.Getenv(holderEnv); v != "" {
		n, _ := strconv.Atoi(v)
		mem := make([]byte, n<<20)
		for i := range mem {
			mem[i] = byte(i)
		}
		for {
			time.Sleep(time.Hour)
			_ = mem[len(mem)-1]
		}
	}
}

func startHolder(b *testing.B, mib int) int {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+strconv.Itoa(mib))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Wait until the memory is touched: RSS reaches the size.
	for i := 0; i < 500; i++ {
		if rssMiB(cmd.Process.Pid) >= mib {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd.Process.Pid
}

func rssMiB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	var size, rss int
	_, _ = fmt.Sscan(string(b), &size, &rss)
	return rss * os.Getpagesize() >> 20
}

func kill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL); reap(pid) }

// BenchmarkFerryCheckpointRestore64M is ferry's driver (go-criu swrk, -v4
// log, stats decoded) on a 64 MiB process: dump, then restore.
func BenchmarkFerryCheckpointRestore64M(b *testing.B) {
	testenv.RequireRoot(b)
	info := testenv.CRIU(b)
	d := &Driver{Path: info.Path}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pid := startHolder(b, 64)
		dir := b.TempDir()
		b.StartTimer()
		if _, err := d.Checkpoint(ctx, migrate.CheckpointRequest{Target: migrate.Target{Kind: migrate.KindPID, PID: pid}, ImagesDir: dir}); err != nil {
			b.Fatal(err)
		}
		reap(pid)
		res, err := d.Restore(ctx, migrate.RestoreRequest{ImagesDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		kill(res.PID)
		b.StartTimer()
	}
}

// BenchmarkRawCRIU64M is the same through the criu command line, as an
// operator would type it: the baseline ferry is measured against.
func BenchmarkRawCRIU64M(b *testing.B) {
	testenv.RequireRoot(b)
	info := testenv.CRIU(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pid := startHolder(b, 64)
		dir := b.TempDir()
		pidfile := filepath.Join(dir, "restored.pid")
		b.StartTimer()
		if out, err := exec.Command(info.Path, "dump", "-t", strconv.Itoa(pid), "-D", dir, "--network-lock", "nftables", "-o", "dump.log", "-v4").CombinedOutput(); err != nil {
			b.Fatalf("dump: %v %s", err, out)
		}
		reap(pid)
		if out, err := exec.Command(info.Path, "restore", "-D", dir, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4").CombinedOutput(); err != nil {
			b.Fatalf("restore: %v %s", err, out)
		}
		b.StopTimer()
		p, _ := os.ReadFile(pidfile)
		n, _ := strconv.Atoi(string(bytes.TrimSpace(p)))
		kill(n)
		b.StartTimer()
	}
}
