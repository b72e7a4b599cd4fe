package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/daemontest"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/lxc"
	"github.com/ferry-migrate/ferry/soak"
)

// TestMigrateLXDIncusPair drives `ferry migrate lxd:NAME` and `ferry migrate
// incus:NAME` between two real daemons (daemontest.Pair), there and back,
// with the configuration that avoids the console failure: each run exits 0
// with a journal whose result is ok, and the container runs on the target
// with its counter carried on. A move to a remote the source's client does
// not know fails after preflight: exit 4, a bug-report bundle named in the
// hints, and the container still running on the source.
//
// The CLI reaches each daemon as a host of its own: --from and --to name
// hosts that run commands inside the daemon's network and mount namespaces
// (daemontest.NSHost), where the daemon is at the packages' paths.
func TestMigrateLXDIncusPair(t *testing.T) {
	t.Cleanup(daemontest.Teardown)
	for _, kind := range []string{migrate.KindLXD, migrate.KindIncus} {
		t.Run(kind, func(t *testing.T) {
			a, b := daemontest.Pair(t, kind)
			t.Setenv("FERRY_RUNS", t.TempDir())
			// The specs must parse as host specs; the resolver below
			// maps them to the daemons' hosts.
			specA, specB := "testbed:pair-a", "testbed:pair-b"
			hosts := map[string]host.Host{
				specA: daemontest.PairHost(t, a, specA),
				specB: daemontest.PairHost(t, b, specB),
			}
			resolve := func(spec string) (host.Host, error) {
				if h, ok := hosts[spec]; ok {
					return h, nil
				}
				return nil, exit.New(exit.Usage, fmt.Errorf("test: unknown host %q", spec))
			}
			name := daemontest.Name("cmdmove")
			daemontest.Launch(t, a, name, daemontest.NoConsole)
			daemontest.Delete(t, b, name) // wherever it ends up
			daemontest.StartCounter(t, a, name)
			target := kind + ":" + name

			for _, leg := range []struct {
				from, to, remote string
				src, dst         *lxc.Client
			}{
				{specA, specB, "b", a, b},
				{specB, specA, "a", b, a},
			} {
				at, err := daemontest.Counter(context.Background(), leg.src, name)
				if err != nil {
					t.Fatal(err)
				}
				args := []string{"migrate", target, "--from", leg.from, "--to", leg.to, "--remote", leg.remote, "--output", "json"}
				start := time.Now()
				code, stdout, stderr := runWith(t, resolve, args...)
				t.Logf("ferry %s: exit %d in %s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond))
				if code != exit.OK {
					t.Fatalf("ferry %s: exit %d\n%s\n%s", strings.Join(args, " "), code, stderr, stdout)
				}
				var j migrate.Journal
				if err := json.Unmarshal([]byte(stdout), &j); err != nil {
					t.Fatalf("journal: %v\n%s", err, stdout)
				}
				if j.Result != migrate.RunOK || j.Operation != lxc.OpMove || j.Driver != kind {
					t.Errorf("journal: result %q operation %q driver %q", j.Result, j.Operation, j.Driver)
				}
				if !strings.Contains(j.Workload, leg.to) || !strings.Contains(j.Workload, "(running)") {
					t.Errorf("journal workload %q: want running on %s", j.Workload, leg.to)
				}
				verified := false
				for _, s := range j.Steps {
					if s.Name == migrate.StepVerify {
						verified = strings.Contains(s.Notes["continuity"], "processes carried on")
					}
				}
				if !verified {
					t.Errorf("journal steps %+v: want a verify step that compared the recorded processes", j.Steps)
				}
				// The same check the daemon tests make: the counter
				// went on from where it was, on the target.
				if err := daemontest.CounterCarriesOn(at)(context.Background(), leg.dst, name); err != nil {
					t.Errorf("after the move to %s: %v", leg.to, err)
				}
				if _, err := leg.src.Instance(context.Background(), name); err == nil {
					t.Errorf("the instance is still on the source %s after the move", leg.from)
				}
			}

			// ferry soak over the same pair: each round moves the
			// instance to the other daemon, checked after every move.
			soakArgs := []string{"soak", "--runtime", kind, "--hosts", specA + "," + specB, "--remotes", "a,b",
				"--workloads", name, "--iterations", "2", "--output", "json"}
			code, stdout, stderr := runWith(t, resolve, soakArgs...)
			if code != exit.OK {
				t.Fatalf("ferry %s: exit %d\n%s\n%s", strings.Join(soakArgs, " "), code, stderr, stdout)
			}
			var res soak.Result
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("soak result: %v\n%s", err, stdout)
			}
			if len(res.Records) != 2 || !res.Summary.OK() || res.Records[0].To != specB || res.Records[1].To != specA {
				t.Errorf("soak: %+v", res)
			}
			for _, r := range res.Records {
				if r.Outcome != soak.OutcomeOK || r.VerifiedOn != r.To || r.Downtime <= 0 {
					t.Errorf("soak move %+v", r)
				}
			}

			// A remote the source's client does not know: the move
			// itself fails, nothing moved.
			at, err := daemontest.Counter(context.Background(), a, name)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"migrate", target, "--from", specA, "--to", specB, "--remote", "nosuch"}
			code, _, stderr = runWith(t, resolve, args...)
			if code != exit.Migration {
				t.Fatalf("ferry %s: exit %d, want %d\n%s", strings.Join(args, " "), code, exit.Migration, stderr)
			}
			m := regexp.MustCompile(`hint: bug-report bundle(?: \(partial[^)]*\))?: (\S+)`).FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("no bundle named in the hints:\n%s", stderr)
			}
			if _, err := os.Stat(m[1]); err != nil {
				t.Errorf("bundle %s: %v", m[1], err)
			}
			if err := daemontest.CounterCarriesOn(at)(context.Background(), a, name); err != nil {
				t.Errorf("after the failed move the container must run on the source: %v", err)
			}
		})
	}
}

func TestMigrateLXDIncusUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "lxd:c1", "--to", "testbed:tb2"}, "needs --remote"},
		{[]string{"migrate", "incus:c1", "--from", "not a host", "--to", "testbed:tb2", "--remote", "r"}, "not a known host form"},
		{[]string{"migrate", "testbed:counter", "--from", "testbed:tb1", "--to", "testbed:tb2"}, "--from applies to lxd and incus targets only"},
	}
	for _, tt := range tests {
		code, _, stderr := runWith(t, nil, tt.args...)
		if code != exit.Usage || !strings.Contains(stderr, tt.want) {
			t.Errorf("ferry %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr, exit.Usage, tt.want)
		}
	}
}
