package criu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
)

func init() { testenv.HoldMemoryIfAsked() }

// startHolder starts the benchmark workload: this test binary re-executed,
// holding mib MiB. Its pid is reaped by reap() after a dump kills it.
func startHolder(b *testing.B, mib int) int {
	b.Helper()
	return testenv.StartHolder(b, mib).Process.Pid
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
