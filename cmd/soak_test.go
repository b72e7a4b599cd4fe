package cmd

import (
	"context"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/exit"
)

func TestSoakUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"soak", "--inject", "meteor"}, `unknown fault "meteor"`},
		{[]string{"soak", "--inject", "disk-full@99", "--iterations", "5"}, "iteration must be 1..5"},
		{[]string{"soak", "--workloads", "mem=lots"}, "want a positive size"},
		{[]string{"soak", "--workloads", "tcp-client"}, "not a zoo workload"},
		{[]string{"soak", "--mode", "lazy"}, "lazy pages over the network fail"},
		{[]string{"soak", "--iterations", "0"}, "nothing to soak"},
		{[]string{"soak", "--runtime", "docker"}, `unknown runtime "docker"`},
		{[]string{"soak", "--hosts", "testbed:tb1,testbed:tb2"}, "--hosts needs --workloads"},
		{[]string{"soak", "--runtime", "lxd", "--hosts", "local"}, "got 1 and 0"},
		{[]string{"soak", "--runtime", "incus", "--hosts", "local,ssh://h2", "--remotes", "a,b"}, "needs --workloads"},
		{[]string{"soak", "--runtime", "incus", "--mode", "page-server"}, "daemon's own stop-copy"},
		{[]string{"soak", "--workloads", "lxd:c1", "--hosts", "local"}, "the lxd runtime soaks between two daemons"},
		{[]string{"soak", "--workloads", "lxd:c1,incus:c2"}, "not an instance of the lxd runtime"},
		{[]string{"soak", "--runtime", "incus", "--workloads", "lxd:c1"}, "not an instance of the incus runtime"},
		{[]string{"soak", "--workloads", "lxd:r1:c1"}, "a remote in a soak workload"},
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
