package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// CopyDir copies the contents of srcDir on src into dstDir on dst (which
// must exist) as one tar stream: over SSH this is a single connection.
func CopyDir(ctx context.Context, src host.Host, srcDir string, dst host.Host, dstDir string) error {
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		_, err := src.Run(ctx, []string{"tar", "-C", srcDir, "-cf", "-", "."}, host.RunOptions{Stdout: pw, Timeout: -1})
		pw.CloseWithError(err) // nil: the reader sees EOF
		sent <- err
	}()
	_, rerr := dst.Run(ctx, []string{"tar", "-C", dstDir, "-xf", "-"}, host.RunOptions{Stdin: pr, Timeout: -1})
	// A receiver that stopped early must not leave the sender blocked.
	pr.CloseWithError(errors.New("the receiving tar exited"))
	serr := <-sent
	if rerr != nil {
		return fmt.Errorf("unpack on %s: %w", dst.Name(), rerr)
	}
	if serr != nil {
		return fmt.Errorf("pack on %s: %w", src.Name(), serr)
	}
	return nil
}

// Fetch copies file remotePath of h into localDir (keeping its name) and
// returns the local path.
func Fetch(ctx context.Context, h host.Host, remotePath, localDir string) (string, error) {
	b, err := host.ReadFile(ctx, h, remotePath, 256<<20)
	if err != nil {
		return "", err
	}
	p := filepath.Join(localDir, filepath.Base(remotePath))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return "", err
	}
	return p, nil
}

// Remove deletes dir on h (rm -rf): the run's files on the target.
func Remove(ctx context.Context, h host.Host, dir string) error {
	if dir == "" || dir == "/" {
		return fmt.Errorf("refusing to remove %q", dir)
	}
	_, err := h.Run(ctx, []string{"rm", "-rf", "--", dir}, host.RunOptions{Timeout: time.Minute})
	return err
}

// procState is the state letter of pid on h ("" when there is no such
// process).
func procState(ctx context.Context, h host.Host, pid int) (string, error) {
	b, err := host.ReadFile(ctx, h, fmt.Sprintf("/proc/%d/stat", pid), 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 {
		return "", fmt.Errorf("%s: malformed /proc/%d/stat", h.Name(), pid)
	}
	return s[i+2 : i+3], nil
}

// Runs checks that pid exists on h and is not a zombie.
func Runs(ctx context.Context, h host.Host, pid int) error {
	if pid <= 0 {
		return errors.New("restore reported no pid")
	}
	st, err := procState(ctx, h, pid)
	switch {
	case err != nil:
		return fmt.Errorf("pid %d on %s: %w", pid, h.Name(), err)
	case st == "":
		return fmt.Errorf("restored pid %d is not running on %s", pid, h.Name())
	case st == "Z" || st == "X":
		return fmt.Errorf("restored pid %d exited on %s (zombie)", pid, h.Name())
	}
	return nil
}

// Tree lists pid and its descendants on h, parents first, from ps.
func Tree(ctx context.Context, h host.Host, pid int) ([]int, error) {
	out, err := host.Output(ctx, h, "ps", "-e", "-o", "pid=,ppid=")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	seen := false
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		p, err1 := strconv.Atoi(f[0])
		pp, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		children[pp] = append(children[pp], p)
		seen = seen || p == pid
	}
	if !seen {
		return nil, nil
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// KillTree stops and kills pid and its descendants on h, and waits until
// the root is gone (or a zombie its parent will reap).
func KillTree(ctx context.Context, h host.Host, pid int) error {
	if pid <= 0 {
		return nil
	}
	tree, err := Tree(ctx, h, pid)
	if err != nil {
		return fmt.Errorf("list the tree of pid %d on %s: %w", pid, h.Name(), err)
	}
	if len(tree) == 0 {
		return nil
	}
	// Stopped first, so that nobody forks while the tree is killed.
	for _, sig := range []string{"-STOP", "-KILL"} {
		argv := []string{"kill", sig, "--"}
		for _, p := range tree {
			argv = append(argv, strconv.Itoa(p))
		}
		_, _ = h.Run(ctx, argv, host.RunOptions{})
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := procState(ctx, h, pid)
		if err == nil && (st == "" || st == "Z" || st == "X") {
			return nil
		}
	}
	return fmt.Errorf("pid %d on %s does not die", pid, h.Name())
}

func asFailure(err error, f **migrate.Failure) bool { return errors.As(err, f) }
