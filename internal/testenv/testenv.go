// Package testenv lets tests ask for what they need from the machine (root,
// a program, CRIU, network namespaces). Outside CI a missing prerequisite
// skips the test; with CI=true it fails it, so CI cannot go green by skipping.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/host"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t outside CI and fails it in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and a prerequisite is missing: "+format, args...)
	}
	t.Skipf("prerequisite missing: "+format, args...)
}

// RequireRoot needs uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges (run the tests as root)")
	}
}

// RequireCommand needs each program on PATH and returns the path of the
// first.
func RequireCommand(t testing.TB, names ...string) string {
	t.Helper()
	var first string
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Missing(t, "%s not on PATH (make deps installs it)", n)
			return ""
		}
		if i == 0 {
			first = p
		}
	}
	return first
}

// CRIU needs a working CRIU (from $FERRY_CRIU, PATH, or where make deps
// puts it) and returns what was found.
func CRIU(t testing.TB) criubin.Info {
	t.Helper()
	info, err := criubin.Find(context.Background(), host.Local{}, os.Getenv(criubin.EnvVar))
	if err != nil {
		Missing(t, "CRIU: %v (make deps installs it)", err)
	}
	return info
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// FerryBinary builds ferry (static, as `make build` does) once per test
// process and returns its path, for tests that run it as a separate
// process: killed mid-operation, run inside a namespace, or as the agent.
func FerryBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/ferry-migrate/ferry/cmd/ferry")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ferry: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}
