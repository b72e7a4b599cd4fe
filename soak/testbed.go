package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/testbed"
)

// TestbedBed soaks workloads of ferry's testbed. Every move is a real
// `ferry migrate` process (the binary Exe), so that a fault can kill it
// the way an operator's ferry dies.
type TestbedBed struct {
	TB *testbed.Testbed
	// Exe is the ferry binary, CRIU the CRIU every move uses.
	Exe, CRIU string
	// HostNames are the testbed hosts to move between, in order.
	HostNames []string
	// RunsDir is the run store of the moves ($FERRY_RUNS); WorkDir holds
	// fault helpers and bundles.
	RunsDir, WorkDir string
	// Companions are workloads checked along with another (the TCP
	// client of the tcp workload), which stay where they are.
	Companions map[string][]string
	// Host runs the commands that set faults up (ip, mount).
	Host host.Host
}

var _ Bed = (*TestbedBed)(nil)

func (b *TestbedBed) Hosts() []string { return b.HostNames }

func (b *TestbedBed) Faults() []string { return AllFaults }

func (b *TestbedBed) Where(ctx context.Context, workload string) (string, error) {
	ps, err := b.TB.Ps(ctx)
	if err != nil {
		return "", err
	}
	for _, w := range ps.Workloads {
		if w.Name == workload {
			return w.Host, nil
		}
	}
	return "", fmt.Errorf("no testbed workload %q", workload)
}

func (b *TestbedBed) Verify(ctx context.Context, workload string) (string, error) {
	var on string
	for i, name := range append([]string{workload}, b.Companions[workload]...) {
		r, err := b.TB.Verify(ctx, name)
		if err != nil {
			return "", err
		}
		if !r.OK {
			return "", fmt.Errorf("%s on %s: %s", name, r.Host, strings.Join(r.Problems, "; "))
		}
		if i == 0 {
			on = r.Host
		}
	}
	return on, nil
}

// env is the environment of every ferry the bed starts.
func (b *TestbedBed) env() []string {
	return append(os.Environ(), "FERRY_RUNS="+b.RunsDir, testbed.DirEnv+"="+b.TB.Dir, testbed.PrefixEnv+"="+b.TB.Prefix, testbed.ExeEnv+"="+b.TB.Exe)
}

func (b *TestbedBed) ferry(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, b.Exe, args...)
	c.Env = b.env()
	// An interrupted soak interrupts its move, which then rolls back.
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = 2 * time.Minute
	return c
}

func (b *TestbedBed) Bundle(ctx context.Context, runID string) (string, error) {
	out := filepath.Join(b.WorkDir, "bundles", "bundle-"+runID+".tar.gz")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	c := b.ferry(ctx, "--criu", b.CRIU, "collect", "--run", runID, "--out", out)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		// Exit 5: a partial bundle is still a bundle.
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			return "", fmt.Errorf("ferry collect: %v: %s", err, lastLine(stderr.String()))
		}
	}
	return out, nil
}

func (b *TestbedBed) Move(ctx context.Context, m MoveSpec, rec *Record) error {
	criu := b.CRIU
	undo := func() error { return nil }
	var watch func(*exec.Cmd, string) func() string
	var err error
	switch m.Fault {
	case "":
	case FaultCRIUMissing:
		criu, err = b.criuMissingOn(m.To)
	case FaultRestoreFailure:
		undo, err = b.takeLinkName(ctx, m)
	case FaultDiskFull:
		undo, err = b.fillDisk(ctx, m.To)
	case FaultLinkCut:
		watch = func(_ *exec.Cmd, runDir string) func() string { return b.cutLink(ctx, m.To, runDir) }
	case FaultKillMidDump:
		watch = func(c *exec.Cmd, runDir string) func() string { return killMidDump(c, runDir) }
	default:
		return fmt.Errorf("fault %q: not known to the testbed", m.Fault)
	}
	if err != nil {
		return fmt.Errorf("set up %s: %w", m.Fault, err)
	}
	moveErr := b.move(ctx, m, criu, rec, watch)
	if err := undo(); err != nil {
		return errors.Join(moveErr, fmt.Errorf("undo %s: %w", m.Fault, err))
	}
	return moveErr
}

var bundleHint = regexp.MustCompile(`hint: bug-report bundle[^:]*: (\S+)`)

// move runs one ferry migrate; watch, when set, runs alongside it once its
// run directory exists and says what it did.
func (b *TestbedBed) move(ctx context.Context, m MoveSpec, criu string, rec *Record, watch func(*exec.Cmd, string) func() string) error {
	c := b.ferry(ctx, "--criu", criu, "migrate", "testbed:"+m.Workload, "--to", "testbed:"+m.To,
		"--mode", m.Mode, "--skip-check", "--output", "json")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	before := runDirs(b.RunsDir)
	if err := c.Start(); err != nil {
		return err
	}
	stopWatch := func() string { return "" }
	if watch != nil {
		// The run directory appears when the run starts.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if d := newRunDir(b.RunsDir, before); d != "" {
				stopWatch = watch(c, d)
				break
			}
		}
	}
	waitErr := c.Wait()
	if note := stopWatch(); note != "" {
		rec.Note = note
	}
	rec.Exit = 0
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return waitErr
		}
		rec.Exit = ee.ExitCode()
	}
	var j migrate.Journal
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
			return fmt.Errorf("ferry migrate printed no journal (%v): %s", err, lastLine(stderr.String()))
		}
	} else if d := newRunDir(b.RunsDir, before); d != "" {
		// A killed ferry printed nothing; its journal is on disk.
		if jj, err := (migrate.Store{Dir: b.RunsDir}).Load(filepath.Base(d)); err == nil {
			j = *jj
		}
	}
	fillFromJournal(rec, &j)
	switch {
	case rec.Exit < 0:
		rec.Error = joinNonEmpty("ferry migrate: "+waitErr.Error(), rec.Error)
	case rec.Exit != 0 && rec.Error == "":
		rec.Error = errorLine(stderr.String())
	}
	if mm := bundleHint.FindStringSubmatch(stderr.String()); mm != nil {
		rec.Bundle = mm[1]
	}
	if m.Fault == FaultKillMidDump && j.Result == migrate.RunRunning {
		note, err := b.recover(ctx, j.ID)
		rec.Note = joinNonEmpty(rec.Note, note)
		if err != nil {
			rec.Error = joinNonEmpty(rec.Error, err.Error())
		}
	}
	return nil
}

// fillFromJournal copies a run's figures into a record.
func fillFromJournal(rec *Record, j *migrate.Journal) {
	rec.RunID = j.ID
	if j.Result != migrate.RunOK && j.Error != "" {
		rec.Error = j.Error
	}
	for _, s := range j.Steps {
		switch s.Name {
		case migrate.StepDump:
			rec.Dump = s.Duration
		case migrate.StepTransfer:
			rec.Transfer = s.Duration
			if n, err := strconv.ParseInt(s.Notes["image_bytes"], 10, 64); err == nil {
				rec.ImageBytes = n
			}
		case migrate.StepRestore:
			rec.Restore = s.Duration
		}
		if s.Result == migrate.StepFailed && len(rec.Lifted) == 0 {
			rec.Lifted = s.Lifted
		}
	}
	if st := j.Stats; st != nil {
		rec.Downtime, rec.Frozen, rec.PagesWritten = st.Downtime, st.FrozenTime, st.PagesWritten
		if st.ImageBytes > 0 {
			rec.ImageBytes = st.ImageBytes
		}
	}
}

// recover runs `ferry runs recover` on a run whose ferry was killed.
func (b *TestbedBed) recover(ctx context.Context, id string) (string, error) {
	c := b.ferry(context.WithoutCancel(ctx), "--criu", b.CRIU, "runs", "recover", id, "--output", "json")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("ferry runs recover %s: %v: %s", id, err, lastLine(stderr.String()))
	}
	var j migrate.Journal
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil {
		return "", fmt.Errorf("ferry runs recover %s printed no journal: %w", id, err)
	}
	return "ferry runs recover " + id + ": " + j.Workload, nil
}

// criuMissingOn writes a CRIU wrapper that fails, as a missing CRIU does,
// inside the network namespace of testbed host h only.
func (b *TestbedBed) criuMissingOn(h string) (string, error) {
	path := filepath.Join(b.WorkDir, "criu-missing-on-"+h)
	script := "#!/bin/sh\n# ferry soak: CRIU is missing on " + h + " (fault " + FaultCRIUMissing + ")\n" +
		"if [ \"$(ip netns identify)\" = " + host.QuoteWord(b.TB.Host(h).Netns) + " ]; then echo 'criu: command not found' >&2; exit 127; fi\n" +
		"exec " + host.QuoteWord(b.CRIU) + " \"$@\"\n"
	if err := os.MkdirAll(b.WorkDir, 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(script), 0o755)
}

// takeLinkName creates, on the target, a link with the name the workload's
// link will need there: CRIU's restore cannot create its veth.
func (b *TestbedBed) takeLinkName(ctx context.Context, m MoveSpec) (func() error, error) {
	ps, err := b.TB.Ps(ctx)
	if err != nil {
		return nil, err
	}
	veth := ""
	for _, w := range ps.Workloads {
		if w.Name == m.Workload {
			veth = w.Veth
		}
	}
	if veth == "" {
		return nil, fmt.Errorf("%s has no link of its own to clash with", m.Workload)
	}
	h := b.TB.Host(m.To)
	if _, err := h.Run(ctx, []string{"ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "x"}, host.RunOptions{}); err != nil {
		return nil, err
	}
	return func() error {
		_, err := h.Run(context.WithoutCancel(ctx), []string{"ip", "link", "del", veth}, host.RunOptions{})
		return err
	}, nil
}

// fillDisk mounts a 256 KiB tmpfs over the target's image directory.
func (b *TestbedBed) fillDisk(ctx context.Context, to string) (func() error, error) {
	dir := filepath.Join(b.TB.HostRoot(to), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := b.Host.Run(ctx, []string{"mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "ferry-soak-disk-full", dir}, host.RunOptions{}); err != nil {
		return nil, err
	}
	return func() error {
		_, err := b.Host.Run(context.WithoutCancel(ctx), []string{"umount", dir}, host.RunOptions{Timeout: time.Minute})
		return err
	}, nil
}

// cutLink takes the target's link down once CRIU streams pages to it, and
// brings it back when the move ended.
func (b *TestbedBed) cutLink(ctx context.Context, to, runDir string) func() string {
	keep := context.WithoutCancel(ctx)
	done := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		if !waitLog(filepath.Join(runDir, "dump.log"), stop, "page-xfer", "Dumping pages") {
			done <- "the move ended before pages streamed: the link was not cut"
			return
		}
		if err := b.TB.SetHostLink(keep, to, false); err != nil {
			done <- "cutting the link failed: " + err.Error()
			return
		}
		<-stop
		if err := b.TB.SetHostLink(keep, to, true); err != nil {
			done <- "the link of " + to + " was cut during the transfer and did not come back: " + err.Error()
			return
		}
		done <- "the link of " + to + " was cut during the page-server transfer"
	}()
	return func() string { close(stop); return <-done }
}

// killMidDump kills ferry with SIGKILL once CRIU dumps.
func killMidDump(c *exec.Cmd, runDir string) func() string {
	done := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		if !waitLog(filepath.Join(runDir, "dump.log"), stop, "Seized task", "Dumping pages") {
			done <- "the move ended before CRIU dumped: ferry was not killed"
			return
		}
		_ = c.Process.Signal(syscall.SIGKILL)
		done <- "ferry was killed with SIGKILL while CRIU dumped"
	}()
	return func() string { close(stop); return <-done }
}

// waitLog waits until the log holds one of marks (true) or stop closes.
func waitLog(path string, stop <-chan struct{}, marks ...string) bool {
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, m := range marks {
				if bytes.Contains(b, []byte(m)) {
					return true
				}
			}
		}
		select {
		case <-stop:
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func runDirs(dir string) map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

func newRunDir(dir string, before map[string]bool) string {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && !before[e.Name()] && strings.Contains(e.Name(), "migrate") {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// errorLine is ferry's "error: ..." line from its stderr.
func errorLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, "error: "); ok {
			return rest
		}
	}
	return lastLine(stderr)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
