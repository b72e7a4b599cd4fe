package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/host"
)

// procStat is what /proc/PID/stat tells about a process.
type procStat struct {
	State     byte
	PPid      int
	StartTime uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ := strconv.Atoi(f[1])
	st, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{State: f[0][0], PPid: ppid, StartTime: st}, nil
}

// alive reports whether pid runs (a zombie does not) and is the process
// that had startTime (0: any).
func alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	s, err := readStat(pid)
	if err != nil || s.State == 'Z' || s.State == 'X' {
		return false
	}
	return startTime == 0 || s.StartTime == startTime
}

// waitGone waits until none of pids runs, up to d; it returns those still
// running.
func waitGone(pids []int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, p := range pids {
			if alive(p, 0) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nsInode is the inode of a namespace file.
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// TestbedProcesses lists the running processes that belong to a testbed:
// those whose environment holds MarkerEnv with a value starting with marker
// (everything the launcher and supervisor start, and what CRIU restores
// from them: State.ID, or "PREFIX-" for any testbed of that prefix), and
// those inside one of the given network namespaces (names under
// /run/netns).
func TestbedProcesses(marker string, netns []string) []int {
	inodes := map[uint64]bool{}
	for _, n := range netns {
		if ino, err := nsInode(filepath.Join(host.NetnsDir, n)); err == nil {
			inodes[ino] = true
		}
	}
	want := []byte("\x00" + MarkerEnv + "=" + marker)
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !alive(pid, 0) {
			continue
		}
		match := false
		if marker != "" {
			if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && bytes.Contains(append([]byte{0}, env...), want) {
				match = true
			}
		}
		if !match && len(inodes) > 0 {
			if ino, err := nsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && inodes[ino] {
				match = true
			}
		}
		if match {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// killAll stops every process of the testbed: workloads first (killing a
// namespace init kills its namespace; the supervisors reap them and exit),
// then anything left that carries the marker or lives in a testbed netns.
func (tb *Testbed) killAll(st *State, marker string, netns []string) ([]int, error) {
	var killed, wait []int
	kill := func(pid int) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, pid)
			wait = append(wait, pid)
		}
	}
	if st != nil {
		for _, w := range st.Workloads {
			if alive(w.Pid, w.StartTime) {
				kill(w.Pid)
			}
		}
		waitGone(wait, 5*time.Second)
		for _, w := range st.Workloads {
			if alive(w.Supervisor, 0) && isOurs(w.Supervisor, marker) {
				kill(w.Supervisor)
			}
		}
	}
	for round := 0; round < 3; round++ {
		pids := TestbedProcesses(marker, netns)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			kill(p)
		}
		waitGone(pids, 3*time.Second)
	}
	sort.Ints(killed)
	killed = dedup(killed)
	if left := waitGone(TestbedProcesses(marker, netns), 5*time.Second); len(left) > 0 {
		return killed, fmt.Errorf("testbed processes still running after SIGKILL: %v", left)
	}
	return killed, nil
}

func isOurs(pid int, marker string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return err == nil && marker != "" && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+MarkerEnv+"="+marker))
}

func dedup(v []int) []int {
	out := v[:0]
	for i, x := range v {
		if i == 0 || x != v[i-1] {
			out = append(out, x)
		}
	}
	return out
}

var errNoSuchWorkload = errors.New("no such workload")
