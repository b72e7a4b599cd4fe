package zoo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

func init() {
	register(&Workload{
		Name:     "tree",
		Summary:  "a process tree: two children, one with a child of its own, all reporting up through pipes",
		Category: "static/pstree, transition/fork (process trees)",
		run:      runTree,
	})
}

// treeNode is the hidden workload each non-root process of the tree runs.
const treeNode = "tree-node"

// selfArgv is the command line that runs another zoo workload: this
// binary with the arguments up to and including the "__zoo" word.
func selfArgv() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for i, a := range os.Args {
		if a == "__zoo" {
			return append([]string{exe}, os.Args[1:i+1]...), nil
		}
	}
	return nil, fmt.Errorf("tree: cannot find the __zoo word in %q", os.Args)
}

// child is one direct child, read through the pipe on its stdout.
type child struct {
	name string
	cmd  *exec.Cmd

	mu      sync.Mutex
	seq     uint64 // last number it reported
	ok      bool   // its own subtree was fine at the last report
	detail  string
	err     error // it exited or broke the protocol
	lastNew time.Time
}

func startChild(name string, depth int) (*child, error) {
	argv, err := selfArgv()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], append(argv[1:], treeNode, strconv.Itoa(depth), name)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tree: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, ok: true, lastNew: time.Now()}
	go c.read(out)
	return c, nil
}

// read follows the child's reports: "SEQ PPID OK DETAIL".
func (c *child) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	me := os.Getpid()
	for sc.Scan() {
		var seq uint64
		var ppid, ok int
		var detail string
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %q", &seq, &ppid, &ok, &detail); err != nil {
			c.fail(fmt.Errorf("tree: %s sent %q: %w", c.name, sc.Text(), err))
			return
		}
		c.mu.Lock()
		switch {
		case seq != c.seq+1:
			c.err = fmt.Errorf("tree: %s reported %d after %d", c.name, seq, c.seq)
		case ppid != me:
			c.err = fmt.Errorf("tree: %s has parent %d, want %d", c.name, ppid, me)
		}
		c.seq, c.ok, c.detail, c.lastNew = seq, ok == 1, detail, time.Now()
		c.mu.Unlock()
	}
	err := c.cmd.Wait()
	c.fail(fmt.Errorf("tree: %s exited (%v)", c.name, err))
}

func (c *child) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// check says whether the child and its subtree are alive and well.
func (c *child) check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return c.err
	case !c.ok:
		return fmt.Errorf("tree: %s reports: %s", c.name, c.detail)
	case time.Since(c.lastNew) > 20*StatusInterval && c.seq > 0:
		// A long silence right after a restore is caught up at once
		// (the child's ticker fires), so only a really stuck child trips this.
		return fmt.Errorf("tree: %s silent since report %d", c.name, c.seq)
	}
	return nil
}

func startChildren(spec map[string]int) ([]*child, error) {
	var cs []*child
	for _, name := range []string{"a", "b"} {
		depth, ok := spec[name]
		if !ok {
			continue
		}
		c, err := startChild(name, depth)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func checkAll(cs []*child) (uint64, error) {
	var total uint64
	for _, c := range cs {
		if err := c.check(); err != nil {
			return 0, err
		}
		c.mu.Lock()
		total += c.seq
		c.mu.Unlock()
	}
	return total, nil
}

func runTree(ctx context.Context, r *reporter, _ []string) error {
	// Child a has a child of its own; b is a leaf.
	cs, err := startChildren(map[string]int{"a": 1, "b": 0})
	if err != nil {
		return err
	}
	return r.loop(ctx, func() (string, error) {
		total, err := checkAll(cs)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("4 processes alive, %d reports from children in order", total), nil
	})
}

// runTreeNode is a non-root process: it starts its own child when depth > 0
// and reports to its parent on stdout.
func runTreeNode(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("tree-node: want DEPTH NAME, got %q", args)
	}
	depth, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var cs []*child
	if depth > 0 {
		c, err := startChild(args[1]+".a", depth-1)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	t := time.NewTicker(StatusInterval)
	defer t.Stop()
	var seq uint64
	for {
		seq++
		ok, detail := 1, "fine"
		if _, err := checkAll(cs); err != nil {
			ok, detail = 0, err.Error()
		}
		if _, err := fmt.Fprintf(os.Stdout, "%d %d %d %q\n", seq, os.Getppid(), ok, detail); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
