package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/testbed/zoo"
)

// Status is the data model of `ferry testbed status`.
type Status struct {
	Up        bool         `json:"up"`
	Dir       string       `json:"dir"`
	ID        string       `json:"id,omitempty"`
	Switch    string       `json:"switch_netns,omitempty"`
	Hosts     []HostStatus `json:"hosts"`
	Workloads int          `json:"workloads"`
}

// HostStatus is one host as it is now.
type HostStatus struct {
	HostState
	// Present is false when its network namespace has gone.
	Present   bool     `json:"present"`
	Workloads []string `json:"workloads"`
}

func (s *Status) WriteText(w io.Writer) error {
	if !s.Up {
		_, err := fmt.Fprintf(w, "testbed is down (%s)\n", s.Dir)
		return err
	}
	fmt.Fprintf(w, "testbed up: %d hosts, %d workloads (%s)\n", len(s.Hosts), s.Workloads, s.Dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNETNS\tADDRESS\tPRESENT\tWORKLOADS")
	for _, h := range s.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", h.Name, h.Netns, h.Addr, h.Present, orNone(h.Workloads))
	}
	return tw.Flush()
}

// Status describes the testbed.
func (tb *Testbed) Status(ctx context.Context) (*Status, error) {
	unlock, err := tb.lock()
	if errors.Is(err, errNoDir) {
		return &Status{Dir: tb.Dir, Hosts: []HostStatus{}}, nil
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := tb.load()
	if err != nil {
		return nil, err
	}
	s := &Status{Dir: tb.Dir, Hosts: []HostStatus{}}
	if st == nil {
		return s, nil
	}
	s.Up, s.ID, s.Switch, s.Workloads = true, st.ID, st.Switch, len(st.Workloads)
	for _, h := range st.Hosts {
		hs := HostStatus{HostState: h, Workloads: []string{}}
		_, err := os.Stat(filepath.Join(host.NetnsDir, h.Netns))
		hs.Present = err == nil
		for _, w := range st.Workloads {
			if w.Host == h.Name {
				hs.Workloads = append(hs.Workloads, w.Name)
			}
		}
		s.Hosts = append(s.Hosts, hs)
	}
	return s, nil
}

// PsEntry is one workload in `ferry testbed ps`.
type PsEntry struct {
	Name    string `json:"name"`
	Host    string `json:"host"`
	Program string `json:"program"`
	Net     string `json:"net"`
	Addr    string `json:"addr"`
	Veth    string `json:"veth,omitempty"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Moves   int    `json:"moves"`
	Rootfs  string `json:"rootfs"`
}

// PsList is the data model of `ferry testbed ps`.
type PsList struct {
	Workloads []PsEntry `json:"workloads"`
}

func (l *PsList) WriteText(w io.Writer) error {
	if len(l.Workloads) == 0 {
		_, err := fmt.Fprintln(w, "no workloads")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tPROGRAM\tNET\tADDRESS\tPID\tRUNNING\tMOVES")
	for _, e := range l.Workloads {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%v\t%d\n", e.Name, e.Host, e.Program, e.Net, orDash(e.Addr), e.Pid, e.Running, e.Moves)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Ps lists the workloads.
func (tb *Testbed) Ps(ctx context.Context) (*PsList, error) {
	st, unlock, err := tb.lockUp()
	if err != nil {
		return nil, err
	}
	defer unlock()
	l := &PsList{Workloads: []PsEntry{}}
	for _, w := range st.Workloads {
		prog := w.Zoo
		if prog == "" {
			prog = strings.Join(w.Argv, " ")
		}
		l.Workloads = append(l.Workloads, PsEntry{
			Name: w.Name, Host: w.Host, Program: prog, Net: w.Net, Addr: w.Addr, Veth: w.Veth, Pid: w.Pid,
			Running: alive(w.Pid, w.StartTime), Moves: w.Moves, Rootfs: w.Rootfs,
		})
	}
	return l, nil
}

// VerifyResult is the data model of `ferry testbed verify`.
type VerifyResult struct {
	Name    string `json:"name"`
	Host    string `json:"host"`
	OK      bool   `json:"ok"`
	Running bool   `json:"running"`
	// Counter is the workload's self-check counter now; Previous the
	// highest one an earlier verify saw.
	Counter  uint64   `json:"counter"`
	Previous uint64   `json:"previous"`
	Detail   string   `json:"detail"`
	Problems []string `json:"problems"`
}

func (r *VerifyResult) WriteText(w io.Writer) error {
	verdict := "ok"
	if !r.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "%s on %s: %s (counter %d, previously %d)\n", r.Name, r.Host, verdict, r.Counter, r.Previous)
	if r.Detail != "" {
		fmt.Fprintf(w, "  %s\n", r.Detail)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	return nil
}

// VerifyWait is how long verify waits for a workload's counter to move:
// long enough for a TCP retransmission after a restore (the backoff doubles
// from 200 ms while the workload is frozen).
const VerifyWait = 5 * time.Second

// Verify asks a workload whether it is intact: it must run, its
// self-check must pass, its counter must advance while verify watches and
// must not be below what an earlier verify saw (a restored workload
// continues, it does not restart). A command workload has no self-check:
// running is all verify can tell. A failed check is a result (OK false),
// not an error.
func (tb *Testbed) Verify(ctx context.Context, name string) (*VerifyResult, error) {
	st, unlock, err := tb.lockUp()
	if err != nil {
		return nil, err
	}
	defer unlock()
	w := st.workload(name)
	if w == nil {
		return nil, withHint(fmt.Errorf("%w: %q", errNoSuchWorkload, name), "list them with `ferry testbed ps`")
	}
	r := &VerifyResult{Name: w.Name, Host: w.Host, Previous: w.Counter, Problems: []string{}}
	r.Running = alive(w.Pid, w.StartTime)
	if !r.Running {
		r.Problems = append(r.Problems, fmt.Sprintf("pid %d is not running", w.Pid))
	}
	if w.Zoo == "" {
		r.Detail = "a command: no self-check, only whether it runs"
		r.OK = r.Running
		return r, nil
	}
	path := filepath.Join(w.Rootfs, zoo.StatusFile)
	// A workload just launched may not have written its first status.
	first, err := zoo.ReadStatus(path)
	for wait := time.Now().Add(VerifyWait); err != nil && r.Running && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
		first, err = zoo.ReadStatus(path)
	}
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("no status from the workload: %v", err))
		return r, nil
	}
	cur := first
	deadline := time.Now().Add(VerifyWait)
	for r.Running && cur.OK && cur.Counter <= first.Counter && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if s, err := zoo.ReadStatus(path); err == nil {
			cur = s
		}
	}
	r.Counter, r.Detail = cur.Counter, cur.Detail
	switch {
	case !cur.OK:
		r.Problems = append(r.Problems, "self-check failed: "+cur.Detail)
	case cur.Counter <= first.Counter:
		r.Problems = append(r.Problems, fmt.Sprintf("counter stuck at %d for %s: the workload is stopped or blocked (%s)", cur.Counter, VerifyWait, cur.Detail))
	}
	if cur.Counter < w.Counter {
		r.Problems = append(r.Problems, fmt.Sprintf("counter went back from %d to %d: the workload restarted instead of continuing", w.Counter, cur.Counter))
	}
	if cur.Pid != 1 {
		r.Problems = append(r.Problems, fmt.Sprintf("the workload is pid %d in its namespace, not 1", cur.Pid))
	}
	r.OK = len(r.Problems) == 0
	if r.OK {
		w.Counter = cur.Counter
		if err := tb.save(st); err != nil {
			return r, err
		}
	}
	return r, nil
}
