package soak

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-migrate/ferry/testbed"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// DefaultZoo is what a soak moves when --workloads is not given: every zoo
// workload (the TCP client stays put on a host of its own).
var DefaultZoo = []string{"mem", "tcp", "threads", "pipes", "files", "fds", "shm", "tree"}

// WorkloadSpec is a zoo workload the soak launches: KIND or KIND=SIZE (the
// mem workload's memory, default 64M).
type WorkloadSpec struct {
	Zoo    string
	Memory int64
}

// Name is the workload's name on the testbed.
func (w WorkloadSpec) Name() string { return w.Zoo }

// WorkloadError is a --workloads item ferry cannot parse.
type WorkloadError struct{ Item, Reason string }

func (e *WorkloadError) Error() string { return fmt.Sprintf("--workloads %q: %s", e.Item, e.Reason) }
func (e *WorkloadError) Hint() string {
	return "zoo workloads: " + strings.Join(DefaultZoo, ", ") + " (mem=SIZE sets its memory, e.g. mem=256M)"
}

// ParseWorkloads parses --workloads items for a soak that brings up its own
// testbed. parseSize reads sizes like 64M.
func ParseWorkloads(items []string, parseSize func(string) (int64, error)) ([]WorkloadSpec, error) {
	if len(items) == 0 {
		items = DefaultZoo
	}
	seen := map[string]bool{}
	var out []WorkloadSpec
	for _, it := range items {
		kind, size, hasSize := strings.Cut(strings.TrimSpace(it), "=")
		if _, ok := zoo.Lookup(kind); !ok || kind == "tcp-client" {
			return nil, &WorkloadError{it, "not a zoo workload"}
		}
		if seen[kind] {
			return nil, &WorkloadError{it, "given twice"}
		}
		seen[kind] = true
		w := WorkloadSpec{Zoo: kind}
		if hasSize {
			if kind != "mem" {
				return nil, &WorkloadError{it, "only mem takes a size"}
			}
			n, err := parseSize(size)
			if err != nil {
				return nil, &WorkloadError{it, err.Error()}
			}
			w.Memory = n
		}
		out = append(out, w)
	}
	return out, nil
}

// StartTestbed brings up a testbed for a soak: two hosts to move between
// (and a third for the TCP client when tcp is soaked), with every workload
// launched on the first host and checked once. It returns the hosts to
// move between and the companions to check with each workload. When it
// fails after the testbed came up, it takes the testbed down again; a
// testbed that was up before (another soak's) is never touched.
func StartTestbed(ctx context.Context, tb *testbed.Testbed, specs []WorkloadSpec) ([]string, map[string][]string, error) {
	hosts, companions, up, err := startTestbed(ctx, tb, specs)
	if err != nil && up {
		_, _ = tb.Down(context.WithoutCancel(ctx))
	}
	return hosts, companions, err
}

func startTestbed(ctx context.Context, tb *testbed.Testbed, specs []WorkloadSpec) (hosts []string, companions map[string][]string, up bool, err error) {
	n := 2
	hasTCP := false
	for _, w := range specs {
		if w.Zoo == "tcp" {
			hasTCP = true
			n = 3
		}
	}
	if _, err := tb.Up(ctx, n); err != nil {
		return nil, nil, false, err
	}
	hosts = []string{tb.HostName(1), tb.HostName(2)}
	companions = map[string][]string{}
	for _, w := range specs {
		req := testbed.RunRequest{Host: hosts[0], Name: w.Name(), Zoo: w.Zoo, Memory: w.Memory}
		if _, err := tb.Run(ctx, req); err != nil {
			return nil, nil, true, fmt.Errorf("start %s: %w", w.Zoo, err)
		}
	}
	if hasTCP {
		client := "tcp-client"
		if _, err := tb.Run(ctx, testbed.RunRequest{Host: tb.HostName(3), Name: client, Zoo: "tcp-client", Args: []string{"tcp"}, Net: testbed.NetHost}); err != nil {
			return nil, nil, true, fmt.Errorf("start the TCP client: %w", err)
		}
		companions["tcp"] = []string{client}
	}
	for _, w := range specs {
		for _, name := range append([]string{w.Name()}, companions[w.Name()]...) {
			r, err := tb.Verify(ctx, name)
			if err != nil {
				return nil, nil, true, err
			}
			if !r.OK {
				return nil, nil, true, fmt.Errorf("%s does not pass its check before the soak: %s", name, strings.Join(r.Problems, "; "))
			}
		}
	}
	return hosts, companions, true, nil
}
