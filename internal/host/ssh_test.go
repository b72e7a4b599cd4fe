package host_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
)

func TestSSHRun(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	ctx := context.Background()

	tests := []struct {
		name       string
		argv       []string
		opt        host.RunOptions
		wantOut    string
		wantErr    string
		wantCode   int
		wantNotFnd bool
	}{
		{
			name:    "stdout and stderr",
			argv:    []string{"sh", "-c", `printf out; printf err >&2`},
			wantOut: "out", wantErr: "err",
		},
		{
			name:    "words reach the program unchanged",
			argv:    []string{"printf", `%s\n`, "a b", "$(id)", "'q'", `"dq"`, "`x`", ";", "&&", "|", "", "*", "~", "\\", "$HOME", "#c", "it's", "new\nline", "\t"},
			wantOut: strings.Join([]string{"a b", "$(id)", "'q'", `"dq"`, "`x`", ";", "&&", "|", "", "*", "~", "\\", "$HOME", "#c", "it's", "new\nline", "\t"}, "\n") + "\n",
		},
		{
			name:    "stdin",
			argv:    []string{"cat"},
			opt:     host.RunOptions{Stdin: strings.NewReader("in\x00put\n")},
			wantOut: "in\x00put\n",
		},
		{
			name:    "env",
			argv:    []string{"sh", "-c", `printf '%s|%s' "$FERRY_A" "$FERRY_B"`},
			opt:     host.RunOptions{Env: []string{"FERRY_A=x y", "FERRY_B=$(id);"}},
			wantOut: "x y|$(id);",
		},
		{
			name:     "exit code",
			argv:     []string{"sh", "-c", "echo boom >&2; exit 3"},
			wantErr:  "boom",
			wantCode: 3,
		},
		{
			// The remote command's own 255 is not an ssh failure.
			name:     "exit 255",
			argv:     []string{"sh", "-c", "echo bye >&2; exit 255"},
			wantErr:  "bye",
			wantCode: 255,
		},
		{
			name:       "command not found",
			argv:       []string{"no-such-program-ferry", "x"},
			wantCode:   127,
			wantNotFnd: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := h.Run(ctx, tt.argv, tt.opt)
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if diff := cmp.Diff(tt.argv, res.Argv); diff != "" {
				t.Errorf("Result.Argv (-want +got):\n%s", diff)
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code = %d, want %d (err %v)", res.ExitCode, tt.wantCode, err)
			}
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var ce *host.CommandError
				if !errors.As(err, &ce) || ce.ExitCode != tt.wantCode {
					t.Fatalf("err = %#v, want a CommandError with exit code %d", err, tt.wantCode)
				}
				if errors.Is(err, host.ErrConnect) {
					t.Errorf("the remote command's failure looks like a connection error: %v", err)
				}
				if got := errors.Is(err, host.ErrNotFound); got != tt.wantNotFnd {
					t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v: %v", got, tt.wantNotFnd, err)
				}
				if tt.wantNotFnd && !strings.Contains(ce.Hint(), "install") {
					t.Errorf("hint = %q", ce.Hint())
				}
			}
			if diff := cmp.Diff(tt.wantOut, string(res.Stdout)); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if tt.wantErr != "" || !tt.wantNotFnd {
				if diff := cmp.Diff(tt.wantErr, strings.TrimSpace(string(res.Stderr))); diff != "" {
					t.Errorf("stderr (-want +got):\n%s", diff)
				}
			}
		})
	}

	t.Run("streams", func(t *testing.T) {
		t.Parallel()
		big := make([]byte, 4<<20)
		for i := range big {
			big[i] = byte(rand.IntN(256))
		}
		var stdout, stderr strings.Builder
		res, err := h.Run(ctx, []string{"sh", "-c", "cat; echo done >&2"}, host.RunOptions{
			Stdin: strings.NewReader(string(big)), Stdout: &stdout, Stderr: &stderr,
		})
		if err != nil {
			t.Fatal(err)
		}
		if stdout.String() != string(big) {
			t.Errorf("streamed stdout: %d bytes back of %d sent, equal %v", stdout.Len(), len(big), stdout.String() == string(big))
		}
		if len(res.Stdout) != 0 {
			t.Errorf("stdout also captured: %d bytes", len(res.Stdout))
		}
		if stderr.String() != "done\n" || string(res.Stderr) != "done\n" {
			t.Errorf("stderr: streamed %q, captured %q", stderr.String(), res.Stderr)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		t.Parallel()
		for _, kv := range []string{"NOEQUALS", "-i=1", "A B=1", "=x"} {
			if _, err := h.Run(ctx, []string{"true"}, host.RunOptions{Env: []string{kv}}); err == nil {
				t.Errorf("Env %q accepted", kv)
			}
		}
	})
	t.Run("bad argv", func(t *testing.T) {
		t.Parallel()
		for _, argv := range [][]string{nil, {}, {""}, {"-c", "id"}, {"-"}} {
			if _, err := h.Run(ctx, argv, host.RunOptions{}); err == nil {
				t.Errorf("argv %q accepted", argv)
			}
		}
	})
}

func TestSSHOpen(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	ctx := context.Background()

	// sshd runs on this machine: a local file is a remote file.
	dir := t.TempDir()
	p := filepath.Join(dir, "it's a file")
	want := "line 1\nline 2 \x00\xff\n"
	if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := host.ReadFile(ctx, h, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}

	for _, missing := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "missing", "deeper"), "-n"} {
		if _, err := h.Open(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want fs.ErrNotExist", missing, err)
		}
	}
	if ok, err := host.Exists(ctx, h, p); !ok || err != nil {
		t.Errorf("Exists(file) = %v, %v", ok, err)
	}
	if ok, err := host.Exists(ctx, h, filepath.Join(dir, "missing")); ok || err != nil {
		t.Errorf("Exists(missing) = %v, %v", ok, err)
	}
}

func TestSSHTimeout(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	ctx := context.Background()
	// Connect first, so that the timeout hits the command, not the
	// handshake.
	if _, err := host.Output(ctx, h, "true"); err != nil {
		t.Fatal(err)
	}

	// A duration no other process uses, to find the processes again.
	token := fmt.Sprintf("30.%06d", rand.IntN(1000000))
	t.Cleanup(func() {
		// Should the remote kill have failed, do not leave the sleeps.
		for _, pid := range findProcs(t, "sleep", token) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	res, err := h.Run(ctx, []string{"sleep", token}, host.RunOptions{Timeout: 500 * time.Millisecond})
	var ce *host.CommandError
	if !errors.As(err, &ce) || !ce.TimedOut || ce.Timeout != 500*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout after 500ms", err)
	}
	if res == nil || res.ExitCode != -1 || ce.ExitCode != -1 {
		t.Errorf("result %+v, error exit code %d: want -1", res, ce.ExitCode)
	}
	if !strings.Contains(err.Error(), "timed out after 500ms") {
		t.Errorf("message: %v", err)
	}
	if pids := findProcs(t, "ssh", token); len(pids) > 0 {
		t.Errorf("local ssh processes still running after the timeout: %v", pids)
	}
	waitGone(t, "sleep", token)

	// A cancelled context does the same.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	_, err = h.Run(cctx, []string{"sleep", token}, host.RunOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: err = %v", err)
	}
	if pids := findProcs(t, "ssh", token); len(pids) > 0 {
		t.Errorf("local ssh processes still running after the cancel: %v", pids)
	}
	waitGone(t, "sleep", token)
	// The shared connection survived the killed clients.
	if out, err := host.Output(ctx, h, "echo", "still"); err != nil || string(out) != "still\n" {
		t.Errorf("after the timeout: %q %v", out, err)
	}
}

// A timeout shorter than the handshake stops the connecting ssh too.
func TestSSHTimeoutWhileConnecting(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	// A server that accepts connections and never says a word.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	target := d.Target
	target.Port = l.Addr().(*net.TCPAddr).Port
	for _, persist := range []time.Duration{0, -1} {
		opt := d.Options
		opt.ControlPersist = persist
		opt.ConnectTimeout = time.Minute
		h, err := host.NewSSH(target, opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		_, err = h.Run(context.Background(), []string{"true"}, host.RunOptions{Timeout: 300 * time.Millisecond})
		var ce *host.CommandError
		if !errors.As(err, &ce) || !ce.TimedOut || ce.Timeout != 300*time.Millisecond || errors.Is(err, host.ErrConnect) {
			t.Errorf("ControlPersist %s: err = %v, want a timeout after 300ms", persist, err)
		}
		if pids := findProcs(t, "ssh", strconv.Itoa(target.Port)); len(pids) > 0 {
			t.Errorf("ControlPersist %s: ssh processes still running: %v", persist, pids)
		}
	}
}

// waitGone waits a little for the remote processes running program with arg
// to end: the remote kill has been sent when Run returns.
func waitGone(t *testing.T, program, arg string) {
	t.Helper()
	for i := 0; ; i++ {
		pids := findProcs(t, program, arg)
		if len(pids) == 0 {
			return
		}
		if i == 50 {
			t.Errorf("remote %s processes still run after the timeout: %v", program, pids)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findProcs lists the processes running program (by executable path) with
// arg among their arguments.
func findProcs(t *testing.T, program, arg string) []int {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		t.Fatal(err)
	}
	if path, err = filepath.EvalSymlinks(path); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != path {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), arg) && running(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestSSHConnectErrors(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	ctx := context.Background()
	dir := t.TempDir()

	_, otherHostKey := hosttest.GenerateKey(t, dir, "other_host_key")
	changed := filepath.Join(dir, "known_hosts_changed")
	d.WriteKnownHosts(t, changed, otherHostKey)
	empty := filepath.Join(dir, "known_hosts_empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	otherUserKey, _ := hosttest.GenerateKey(t, dir, "other_user_key")
	closed := d.Target
	closed.Port = hosttest.ClosedPort(t)
	// A server that accepts connections and never says a word.
	silentL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silentL.Close() })
	silent := d.Target
	silent.Port = silentL.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name     string
		target   host.SSHTarget
		opt      func(*host.SSHOptions)
		wantKind string
		wantHint string
	}{
		{
			name:     "changed host key",
			opt:      func(o *host.SSHOptions) { o.KnownHostsFile = changed },
			wantKind: "host key changed",
			wantHint: "ssh-keygen -R",
		},
		{
			name: "changed host key with accept-new",
			opt: func(o *host.SSHOptions) {
				o.KnownHostsFile = changed
				o.HostKeyPolicy = "accept-new"
			},
			wantKind: "host key changed",
			wantHint: "ssh-keygen -R",
		},
		{
			name:     "unknown host key",
			opt:      func(o *host.SSHOptions) { o.KnownHostsFile = empty },
			wantKind: "host key not trusted",
			wantHint: "known_hosts",
		},
		{
			name:     "unknown host key with StrictHostKeyChecking=yes",
			opt:      func(o *host.SSHOptions) { o.KnownHostsFile = empty; o.HostKeyPolicy = "yes" },
			wantKind: "host key not trusted",
			wantHint: "known_hosts",
		},
		{
			name:     "key not authorized",
			opt:      func(o *host.SSHOptions) { o.IdentityFile = otherUserKey },
			wantKind: "authentication failed",
			wantHint: "authorized_keys",
		},
		{
			name:     "closed port",
			target:   closed,
			wantKind: "connection refused",
			wantHint: "sshd runs",
		},
		{
			name:     "silent server",
			target:   silent,
			opt:      func(o *host.SSHOptions) { o.ConnectTimeout = time.Second },
			wantKind: "connection timed out",
			wantHint: "firewalls",
		},
		{
			name:     "closed port without connection sharing",
			target:   closed,
			opt:      func(o *host.SSHOptions) { o.ControlPersist = -1 },
			wantKind: "connection refused",
			wantHint: "sshd runs",
		},
		{
			name:     "unknown host key without connection sharing",
			opt:      func(o *host.SSHOptions) { o.KnownHostsFile = empty; o.ControlPersist = -1 },
			wantKind: "host key not trusted",
			wantHint: "known_hosts",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt := d.Options
			if tt.opt != nil {
				tt.opt(&opt)
			}
			target := d.Target
			if tt.target.Host != "" {
				target = tt.target
			}
			h, err := host.NewSSH(target, opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })

			marker := filepath.Join(t.TempDir(), "ran")
			_, err = h.Run(ctx, []string{"touch", marker}, host.RunOptions{})
			if _, serr := os.Stat(marker); serr == nil {
				t.Errorf("the command ran")
			}
			var ce *host.ConnectError
			if !errors.As(err, &ce) || !errors.Is(err, host.ErrConnect) {
				t.Fatalf("err = %v, want a ConnectError", err)
			}
			var cmdErr *host.CommandError
			if !errors.As(err, &cmdErr) || cmdErr.ExitCode != -1 {
				t.Errorf("err = %#v, want a CommandError with exit code -1", err)
			}
			if ce.Kind != tt.wantKind {
				t.Errorf("kind = %q, want %q (%v)", ce.Kind, tt.wantKind, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "cannot connect: "+tt.wantKind) {
				t.Errorf("message is not one clear line: %q", msg)
			}
			if !strings.Contains(ce.Hint(), tt.wantHint) {
				t.Errorf("hint = %q, want it to mention %q", ce.Hint(), tt.wantHint)
			}
		})
	}
}

func TestSSHAcceptNew(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	opt := d.Options
	opt.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	opt.HostKeyPolicy = "accept-new"
	h := d.Host(t, opt)
	if out, err := host.Output(context.Background(), h, "echo", "ok"); err != nil || string(out) != "ok\n" {
		t.Fatalf("run: %q %v", out, err)
	}
	kh, err := os.ReadFile(opt.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	if key := strings.Fields(d.HostKey)[1]; !strings.Contains(string(kh), key) {
		t.Errorf("known_hosts does not hold the host key:\n%s", kh)
	}
}

func TestSSHRejectsNoHostKeyChecking(t *testing.T) {
	t.Parallel()
	target := host.SSHTarget{Host: "db1"}
	for _, opt := range []host.SSHOptions{
		{HostKeyPolicy: "no"},
		{HostKeyPolicy: "off"},
		{HostKeyPolicy: "NO"},
		{HostKeyPolicy: "ask"},
		{Options: []string{"StrictHostKeyChecking=no"}},
		{Options: []string{"StrictHostKeyChecking no"}},
		{Options: []string{`stricthostkeychecking="off"`}},
		{Options: []string{"-oProxyCommand=x"}},
		{Options: []string{"NoValue"}},
	} {
		_, err := host.NewSSH(target, opt)
		var h interface{ Hint() string }
		if err == nil || !errors.As(err, &h) || h.Hint() == "" {
			t.Errorf("NewSSH(%+v) = %v, want an error with a hint", opt, err)
		}
	}
	for _, opt := range []host.SSHOptions{
		{HostKeyPolicy: "accept-new"},
		{HostKeyPolicy: "yes"},
		{Options: []string{"ProxyJump=bastion", "StrictHostKeyChecking=yes"}},
	} {
		if _, err := host.NewSSH(target, opt); err != nil {
			t.Errorf("NewSSH(%+v) = %v", opt, err)
		}
	}
}

func TestSSHMultiplex(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h, err := host.NewSSH(d.Target, d.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx := context.Background()

	if _, err := h.Check(ctx); err == nil {
		t.Fatal("a master runs before the first command")
	}
	if _, err := host.Output(ctx, h, "true"); err != nil {
		t.Fatal(err)
	}
	dir := h.ControlDir()
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("control directory %s: %v %v", dir, st.Mode(), err)
	}
	sockets := func() []string {
		var s []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Type()&fs.ModeSocket != 0 {
				s = append(s, e.Name())
			}
		}
		return s
	}
	if s := sockets(); len(s) != 1 {
		t.Fatalf("sockets in %s: %v, want one", dir, s)
	}
	pid, err := h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := host.Output(ctx, h, "true"); err != nil {
			t.Fatal(err)
		}
	}
	if again, err := h.Check(ctx); err != nil || again != pid {
		t.Errorf("master pid %d then %d (%v): commands did not reuse it", pid, again, err)
	}
	if n := d.Logins(); n != 1 {
		t.Errorf("sshd accepted %d connections for 6 commands, want 1", n)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("control directory left behind: %v", err)
	}
	if _, err := h.Check(ctx); err == nil {
		t.Error("a master runs after Close")
	}
	// The master exits right after answering `ssh -O exit`.
	for i := 0; running(pid); i++ {
		if i == 50 {
			t.Errorf("master process %d still runs after Close", pid)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// The host stays usable after Close.
	if out, err := host.Output(ctx, h, "echo", "again"); err != nil || string(out) != "again\n" {
		t.Errorf("run after Close: %q %v", out, err)
	}
	if n := d.Logins(); n != 2 {
		t.Errorf("sshd accepted %d connections, want 2", n)
	}

	// A control directory removed behind ferry's back is made again.
	// (The master whose socket went with it can only be killed.)
	orphan, err := h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.ControlDir()); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(orphan, syscall.SIGTERM)
	if out, err := host.Output(ctx, h, "echo", "new dir"); err != nil || string(out) != "new dir\n" {
		t.Errorf("run after the control directory went: %q %v", out, err)
	}

	// A master that died without cleaning up leaves a stale socket: the
	// next command replaces it, quietly.
	dir = h.ControlDir()
	pid, err = h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for running(pid) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := sockets(); len(s) != 1 {
		t.Fatalf("sockets after killing the master: %v, want the stale one", s)
	}
	res, err := h.Run(ctx, []string{"echo", "stale"}, host.RunOptions{})
	if err != nil || string(res.Stdout) != "stale\n" || len(res.Stderr) != 0 {
		t.Fatalf("run after the master died: %+v %v", res, err)
	}
	if again, err := h.Check(ctx); err != nil || again == pid {
		t.Errorf("no new master after the old one died: pid %d, %v", again, err)
	}

	// Close does not mind a master that died.
	pid, err = h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for running(pid) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.Close(); err != nil {
		t.Errorf("Close after the master died: %v", err)
	}
}

// running reports whether process pid exists and is not a zombie waiting
// for its parent.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

// Concurrent first commands share one connection, and none of them sees
// ssh's complaints about racing for the master.
func TestSSHConcurrentFirstCommands(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			res, err := h.Run(ctx, []string{"echo", strconv.Itoa(i)}, host.RunOptions{})
			switch {
			case err != nil:
				errs[i] = err
			case string(res.Stdout) != strconv.Itoa(i)+"\n" || len(res.Stderr) != 0:
				errs[i] = fmt.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("command %d: %v", i, err)
		}
	}
	if n := d.Logins(); n != 1 {
		t.Errorf("sshd accepted %d connections, want 1", n)
	}
}

// Beyond sshd's MaxSessions, ssh opens a connection of its own; its notes
// about that stay out of the command's stderr.
func TestSSHMoreCommandsThanMaxSessions(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t, "MaxSessions 2")
	h := d.Host(t, d.Options)
	ctx := context.Background()
	if _, err := host.Output(ctx, h, "true"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() {
			res, err := h.Run(ctx, []string{"sh", "-c", `sleep 1; echo "$1"; echo "e$1" >&2`, "sh", strconv.Itoa(i)}, host.RunOptions{})
			switch {
			case err != nil:
				errs[i] = err
			case string(res.Stdout) != fmt.Sprintf("%d\n", i) || string(res.Stderr) != fmt.Sprintf("e%d\n", i):
				errs[i] = fmt.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("command %d: %v", i, err)
		}
	}
	if n := d.Logins(); n < 2 {
		t.Errorf("sshd accepted %d connections: the test did not go past MaxSessions", n)
	}
}

// What the remote shell's startup files print comes before the pid line;
// it stays in stderr, and the pid is still found.
func TestSSHShellStartupOutput(t *testing.T) {
	t.Parallel()
	// bash reads $BASH_ENV before running a command.
	if out, err := host.Output(context.Background(), host.Local{}, "getent", "passwd", strconv.Itoa(os.Geteuid())); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "/bash") {
		t.Skipf("the login shell is not bash: %q %v", out, err)
	}
	env := filepath.Join(t.TempDir(), "bash_env")
	if err := os.WriteFile(env, []byte("echo startup says hello >&2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := hosttest.StartSSHD(t, "SetEnv BASH_ENV="+env)
	h := d.Host(t, d.Options)
	ctx := context.Background()

	var streamed strings.Builder
	res, err := h.Run(ctx, []string{"sh", "-c", "echo out; echo err >&2"}, host.RunOptions{Stderr: &streamed})
	if err != nil {
		t.Fatal(err)
	}
	// Shells that ~/.bashrc starts before bash reads $BASH_ENV say hello
	// too: how often depends on the machine.
	startup := regexp.MustCompile(`^(startup says hello\n)+err\n$`)
	if !startup.Match(res.Stderr) || streamed.String() != string(res.Stderr) || string(res.Stdout) != "out\n" {
		t.Errorf("stdout %q, stderr %q, streamed stderr %q; want stderr %s", res.Stdout, res.Stderr, streamed.String(), startup)
	}

	token := fmt.Sprintf("30.%06d", rand.IntN(1000000))
	t.Cleanup(func() {
		for _, pid := range findProcs(t, "sleep", token) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	_, err = h.Run(ctx, []string{"sleep", token}, host.RunOptions{Timeout: 500 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	waitGone(t, "sleep", token)
}

func TestSSHNew(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h, err := host.New(d.Spec, host.WithSSHOptions(d.Options))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := h.(*host.SSH)
	if !ok {
		t.Fatalf("New(%q) = %T, want *host.SSH", d.Spec, h)
	}
	t.Cleanup(func() { s.Close() })
	if h.Name() != d.Spec {
		t.Errorf("Name = %q, want %q", h.Name(), d.Spec)
	}
	out, err := host.Output(context.Background(), h, "id", "-u")
	if want := strconv.Itoa(os.Geteuid()) + "\n"; err != nil || string(out) != want {
		t.Errorf("id -u = %q %v, want %q", out, err, want)
	}
}

func TestSSHLookPath(t *testing.T) {
	t.Parallel()
	d := hosttest.StartSSHD(t)
	h := d.Host(t, d.Options)
	want, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.LookPath("sh")
	if err != nil || filepath.Base(got) != "sh" || !filepath.IsAbs(got) {
		t.Errorf("LookPath(sh) = %q, %v; local PATH has %s", got, err, want)
	}
	for _, name := range []string{"no-such-program-ferry", "cd", "-v", "", "a b"} {
		if p, err := h.LookPath(name); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("LookPath(%q) = %q, %v; want ErrNotFound", name, p, err)
		}
	}
}

// BenchmarkSSHRun measures a command on a fresh host (handshake included)
// and on a host whose master connection is up.
func BenchmarkSSHRun(b *testing.B) {
	d := hosttest.StartSSHD(b)
	ctx := context.Background()
	b.Run("first", func(b *testing.B) {
		h, err := host.NewSSH(d.Target, d.Options)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := host.Output(ctx, h, "true"); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := h.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("multiplexed", func(b *testing.B) {
		h := d.Host(b, d.Options)
		if _, err := host.Output(ctx, h, "true"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := host.Output(ctx, h, "true"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unshared", func(b *testing.B) {
		opt := d.Options
		opt.ControlPersist = -1
		h := d.Host(b, opt)
		for b.Loop() {
			if _, err := host.Output(ctx, h, "true"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
