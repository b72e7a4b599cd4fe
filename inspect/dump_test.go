package inspect

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
)

// memWorkload makes the test binary a process holding memBytes of
// touched memory: the "mem" workload of the dumps below.
const memWorkload = "FERRY_INSPECT_MEM"

const memBytes = 8 << 20

func TestMain(m *testing.M) {
	if os.Getenv(memWorkload) != "" {
		b := make([]byte, memBytes)
		for i := range b {
			b[i] = byte(i*7 + 1)
		}
		os.Stdout.Write([]byte{b[12345]})
		select {}
	}
	// Workloads must hold only the fds a test gives them, not what the
	// test's own parent leaked to it.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	// Dumped trees are killed by CRIU; as a subreaper the test reaps them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// workload is a process tree to dump.
type workload struct {
	argv []string
	env  []string
	// files are passed as fds 3, 4, ...
	files []*os.File
	// ready, if set, is read until the workload has written a byte.
	ready bool
	tcp   bool
}

// start runs w in its own session with stdio on /dev/null.
func start(t *testing.T, w workload) int {
	t.Helper()
	cmd := exec.Command(w.argv[0], w.argv[1:]...)
	cmd.Env = append(os.Environ(), w.env...)
	cmd.ExtraFiles = w.files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var r *os.File
	if w.ready {
		var wr *os.File
		var err error
		r, wr, err = os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = wr
		defer wr.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	for _, f := range w.files {
		f.Close()
	}
	if r != nil {
		defer r.Close()
		if _, err := r.Read(make([]byte, 1)); err != nil {
			t.Fatalf("workload %v: %v", w.argv, err)
		}
	}
	return cmd.Process.Pid
}

// dump checkpoints w with CRIU into a new directory.
func dump(t *testing.T, w workload) string {
	t.Helper()
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	pid := start(t, w)
	waitChildren(t, pid, len(w.argv) > 2 && w.argv[0] == "sh")
	dir := filepath.Join(t.TempDir(), "images")
	d := &criu.Driver{Path: info.Path}
	_, err := d.Checkpoint(context.Background(), migrate.CheckpointRequest{
		Target: migrate.Target{Kind: migrate.KindPID, PID: pid}, ImagesDir: dir,
		TCPEstablished: w.tcp, LeaveRunning: w.tcp, NetworkLock: "nftables",
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, criu.DumpLog))
		t.Fatalf("dump %v: %v\n%s", w.argv, err, tail(string(log), 30))
	}
	return dir
}

// waitChildren waits until a shell workload has started its children.
func waitChildren(t *testing.T, pid int, shell bool) {
	if !shell {
		return
	}
	for i := 0; i < 500; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if len(strings.Fields(string(b))) >= 2 {
			// and the children have exec'd sleep
			ok := true
			for _, c := range strings.Fields(string(b)) {
				comm, _ := os.ReadFile("/proc/" + c + "/comm")
				ok = ok && strings.TrimSpace(string(comm)) == "sleep"
			}
			if ok {
				return
			}
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	t.Fatalf("pid %d did not start its children", pid)
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// deletedFile is an open file with content whose name is gone.
func deletedFile(t *testing.T, content string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "deleted-but-open"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Name()); err != nil {
		t.Fatal(err)
	}
	return f
}

// tcpPair returns a listener's file and one established connection's
// client end; the server end stays open in the test.
func tcpPair(t *testing.T) (listen, conn *os.File) {
	t.Helper()
	// CRIU cannot dump MPTCP sockets, Go's default for listeners.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var d net.Dialer
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	return lf, cf
}

func socketPair(t *testing.T) (a, b *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
}

// workloads are the dumps the golden tests show.
func workloads(t *testing.T) map[string]func() workload {
	return map[string]func() workload{
		"sleep": func() workload { return workload{argv: []string{"sleep", "1000"}} },
		"tree": func() workload {
			return workload{argv: []string{"sh", "-c", "sleep 1000 & sleep 1001 & wait"}}
		},
		"files": func() workload {
			return workload{argv: []string{"sleep", "1000"}, files: []*os.File{deletedFile(t, "hello, ghost\n")}}
		},
		"tcp": func() workload {
			l, c := tcpPair(t)
			a, b := socketPair(t)
			return workload{argv: []string{"sleep", "1000"}, files: []*os.File{l, c, a, b}, tcp: true}
		},
		"mem": func() workload {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			return workload{argv: []string{exe, "-test.run=^$"}, env: []string{memWorkload + "=1"}, ready: true}
		},
	}
}

// normalize makes a checkpoint comparable across runs: pids become their
// order in the tree, and what changes with the machine and the moment
// (addresses' ports, inodes, pipe ids, memory figures, timings) is blanked.
func normalize(c *Checkpoint) {
	pids := map[uint32]uint32{0: 0}
	for i, p := range c.Processes {
		pids[p.PID] = uint32(i + 1)
	}
	for _, m := range c.Memory {
		if _, ok := pids[m.PID]; !ok {
			pids[m.PID] = uint32(len(pids))
		}
	}
	c.Dir = "DIR"
	c.Summary.ImageBytes, c.Summary.Pages, c.Summary.Bytes = 0, 0, 0
	for i := range c.Processes {
		p := &c.Processes[i]
		p.PID, p.PPID, p.PGID, p.SID = pids[p.PID], pids[p.PPID], pids[p.PGID], pids[p.SID]
		for j, a := range p.Cmdline {
			if strings.HasPrefix(a, "/") {
				p.Cmdline[j] = filepath.Base(a)
			}
		}
		if strings.HasPrefix(p.Comm, "inspect.test") {
			p.Comm, p.Threads = "inspect.test", 0
		}
	}
	for i := range c.Memory {
		c.Memory[i] = Memory{PID: pids[c.Memory[i].PID]}
	}
	pipe := regexp.MustCompile(`\[\d+\]`)
	var files []File
	for _, f := range c.Files {
		if c.Processes[0].Comm == "inspect.test" && f.FD > 2 {
			continue // the Go runtime's own fds (epoll, pipes)
		}
		f.PID, f.MountID = pids[f.PID], 0
		f.Path = pipe.ReplaceAllString(f.Path, "[N]")
		if f.Ghost {
			f.Path = filepath.Base(f.Path)
		}
		files = append(files, f)
	}
	c.Files = files
	c.Summary.Files = len(files)
	c.Summary.Threads = 0
	for _, p := range c.Processes {
		c.Summary.Threads += p.Threads
	}
	port := regexp.MustCompile(`:\d+$`)
	for i := range c.Sockets {
		s := &c.Sockets[i]
		s.PID, s.Ino = pids[s.PID], 0
		s.Local, s.Peer = port.ReplaceAllString(s.Local, ":PORT"), port.ReplaceAllString(s.Peer, ":PORT")
		if strings.HasPrefix(s.Peer, "ino:") {
			s.Peer = "ino:N"
		}
	}
	for i := range c.Findings {
		f := &c.Findings[i]
		f.PID = pids[f.PID]
		f.Detail = regexp.MustCompile(`/\S*/`).ReplaceAllString(port.ReplaceAllString(regexp.MustCompile(`:\d+ `).ReplaceAllString(f.Detail, ":PORT "), ":PORT"), "")
		f.Fix = port.ReplaceAllString(regexp.MustCompile(`:\d+ `).ReplaceAllString(f.Fix, ":PORT "), ":PORT ")
	}
	if c.Stats != nil {
		c.Stats = &Stats{PagesScanned: 0}
	}
}
