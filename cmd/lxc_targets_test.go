package cmd

import (
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/daemontest"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/migrate"
)

// TestDaemonTargets drives ferry checkpoint and restore on real LXD and
// Incus containers: a stock container's stateful restore fails with the
// known console issue named in the hints; without a console, snapshot,
// restore, stop and start succeed.
func TestDaemonTargets(t *testing.T) {
	t.Cleanup(daemontest.Teardown)
	for _, kind := range []string{migrate.KindLXD, migrate.KindIncus} {
		t.Run(kind, func(t *testing.T) {
			c := daemontest.Daemon(t, kind)
			t.Setenv("FERRY_RUNS", t.TempDir())

			stock := daemontest.Name("cmdstock")
			daemontest.Launch(t, c, stock, daemontest.Stock)
			target := kind + ":" + stock
			var j migrate.Journal
			if code, stderr := runJSON(t, &j, "checkpoint", target, "--snapshot", "s1"); code != exit.OK {
				t.Fatalf("checkpoint %s --snapshot: exit %d\n%s", target, code, stderr)
			}
			code, stderr := runJSON(t, &j, "restore", target, "--snapshot", "s1")
			if code != exit.Migration {
				t.Fatalf("stock restore: exit %d, want %d\n%s", code, exit.Migration, stderr)
			}
			if !strings.Contains(stderr, "known issue lxc-console-path-mismatch") || !strings.Contains(stderr, "canonical/lxd/issues/9396") {
				t.Errorf("stderr does not name the console issue:\n%s", stderr)
			}
			if j.Result != migrate.RunFailed || j.Operation != "restore" || j.Driver != kind {
				t.Errorf("journal: result %q operation %q driver %q", j.Result, j.Operation, j.Driver)
			}

			ok := daemontest.Name("cmdok")
			daemontest.Launch(t, c, ok, daemontest.NoConsole)
			daemontest.StartCounter(t, c, ok)
			target = kind + ":" + ok
			for _, args := range [][]string{
				{"checkpoint", target, "--snapshot", "s1"},
				{"restore", target, "--snapshot", "s1"},
				{"checkpoint", target, "--stop"},
				{"restore", target},
			} {
				if code, stderr := runJSON(t, &j, args...); code != exit.OK {
					t.Fatalf("ferry %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
				}
				if j.Result != migrate.RunOK {
					t.Errorf("ferry %s: journal result %q", strings.Join(args, " "), j.Result)
				}
			}
		})
	}
}

func TestDaemonTargetUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"checkpoint", "lxd:c1"}, "no operation given"},
		{[]string{"checkpoint", "incus:c1", "--snapshot", "s1", "--stop"}, "cannot be combined"},
		{[]string{"restore", "lxd:c1", "--dir", "/tmp/x"}, "--dir cannot be used"},
		{[]string{"restore", "pid:12"}, "not supported"},
		{[]string{"restore"}, `required flag(s) "dir" not set`},
		{[]string{"checkpoint", "pid:12", "--snapshot", "s1"}, "not for pid targets"},
	}
	for _, tt := range tests {
		io, _, errOut := testIO()
		code := Run(t.Context(), tt.args, io)
		if code != exit.Usage || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("ferry %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, errOut, exit.Usage, tt.want)
		}
	}
}
