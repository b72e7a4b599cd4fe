package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// State is the testbed on disk (Dir/state.json): what `up` made and which
// workloads run where. Every command reads it under the lock and writes it
// back before releasing the lock, so separate ferry invocations compose.
type State struct {
	// ID ("PREFIX-RANDOM") marks every process the testbed starts
	// (environment variable MarkerEnv), so that `down` finds them even
	// when the state is stale or lost.
	ID        string      `json:"id"`
	Prefix    string      `json:"prefix"`
	Switch    string      `json:"switch_netns"`
	Created   time.Time   `json:"created"`
	Hosts     []HostState `json:"hosts"`
	Workloads []*Workload `json:"workloads"`
	// NextID numbers workloads: their address and host-side link name.
	NextID int `json:"next_id"`
}

// HostState is one simulated host.
type HostState struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	// Addr is the host's address on the private link (10.251.0.N).
	Addr string `json:"addr"`
	// Port is the host's link name in the switch namespace.
	Port string `json:"port"`
	// Root holds the host's workload root filesystems.
	Root string `json:"root"`
}

// Workload is one launched (or restored) workload.
type Workload struct {
	Name string `json:"name"`
	Host string `json:"host"`
	// Zoo is the zoo workload's name; empty for a command.
	Zoo  string   `json:"zoo,omitempty"`
	Argv []string `json:"argv"`
	// Net is "own" or "host".
	Net string `json:"net"`
	ID  int    `json:"id"`
	// Addr is the workload's own /32 (own net only): it follows the
	// workload to other hosts.
	Addr string `json:"addr,omitempty"`
	// Veth is the host-side end of the workload's link.
	Veth string `json:"veth,omitempty"`
	// Pid is the outer pid of the workload's namespace init: what
	// `criu dump -t` takes.
	Pid        int       `json:"pid"`
	StartTime  uint64    `json:"start_time"`
	Supervisor int       `json:"supervisor_pid"`
	Rootfs     string    `json:"rootfs"`
	Started    time.Time `json:"started"`
	// Moves counts restores on another host.
	Moves int `json:"moves"`
	// Counter is the highest self-check counter verify saw: a restored
	// workload must continue from there, not restart.
	Counter uint64 `json:"counter"`
}

func (s *State) host(name string) *HostState {
	for i := range s.Hosts {
		if s.Hosts[i].Name == name {
			return &s.Hosts[i]
		}
	}
	return nil
}

func (s *State) workload(name string) *Workload {
	for _, w := range s.Workloads {
		if w.Name == name {
			return w
		}
	}
	return nil
}

func (s *State) hostNames() []string {
	var n []string
	for _, h := range s.Hosts {
		n = append(n, h.Name)
	}
	return n
}

func (s *State) removeWorkload(name string) {
	out := s.Workloads[:0]
	for _, w := range s.Workloads {
		if w.Name != name {
			out = append(out, w)
		}
	}
	s.Workloads = out
}

// errNoDir: the testbed's directory does not exist, so it is down.
var errNoDir = errors.New("no testbed directory")

// lock takes the testbed's lock file; the returned func releases it. Only
// up creates the directory: the others find errNoDir.
func (tb *Testbed) lock() (func(), error) { return tb.lockDir(false) }

// lockUp takes the lock and loads the state of a testbed that is up; the
// returned func releases the lock. A testbed that is down is errDown.
func (tb *Testbed) lockUp() (*State, func(), error) {
	unlock, err := tb.lock()
	if errors.Is(err, errNoDir) {
		return nil, nil, errDown()
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := tb.load()
	if err == nil && st == nil {
		err = errDown()
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return st, unlock, nil
}

func (tb *Testbed) lockDir(create bool) (func(), error) {
	if !create {
		if _, err := os.Stat(tb.Dir); errors.Is(err, fs.ErrNotExist) {
			return nil, errNoDir
		}
	}
	if err := os.MkdirAll(tb.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(tb.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("testbed lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (tb *Testbed) statePath() string { return filepath.Join(tb.Dir, "state.json") }

// load reads the state; nil without error when the testbed is down.
func (tb *Testbed) load() (*State, error) {
	b, err := os.ReadFile(tb.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("testbed state %s: %w", tb.statePath(), err)
	}
	return &s, nil
}

func (tb *Testbed) save(s *State) error {
	sort.Slice(s.Workloads, func(i, j int) bool { return s.Workloads[i].Name < s.Workloads[j].Name })
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := tb.statePath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, tb.statePath())
}
