package lxc

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report/explain"
)

// LogDirs are the per-instance log directories of a daemon, in the order
// tried: Debian/distribution packages first, then the snap.
func (c *Client) LogDirs(name string) []string {
	if c.LogRoot != "" {
		return []string{c.LogRoot + "/" + name}
	}
	if c.Kind == migrate.KindIncus {
		return []string{"/var/log/incus/" + name, "/var/lib/incus/logs/" + name}
	}
	return []string{"/var/log/lxd/" + name, "/var/snap/lxd/common/lxd/logs/" + name}
}

// StateDirs are where a stateful stop leaves its images and dump.log.
func (c *Client) StateDirs(name string) []string {
	if c.LibRoot != "" {
		return []string{c.LibRoot + "/containers/" + name + "/state"}
	}
	if c.Kind == migrate.KindIncus {
		return []string{"/var/lib/incus/containers/" + name + "/state"}
	}
	return []string{"/var/lib/lxd/containers/" + name + "/state", "/var/snap/lxd/common/lxd/containers/" + name + "/state"}
}

// isCRIULog reports whether a file in a daemon's log directory is a CRIU
// log: snapshot_dump_<ts>.log, migration_restore_<ts>.log, dump.log, ...
func isCRIULog(name string) bool {
	if name == "dump.log" || name == "restore.log" {
		return true
	}
	if !strings.HasSuffix(name, ".log") {
		return false
	}
	for _, p := range []string{"snapshot_", "migration_", "checkpoint_"} {
		if strings.HasPrefix(name, p) && (strings.Contains(name, "_dump_") || strings.Contains(name, "_restore_") || strings.Contains(name, "_pre-dump_")) {
			return true
		}
	}
	return false
}

// listDir lists a directory's file names on the client's host; a missing
// directory is empty.
func listDir(ctx context.Context, h host.Host, dir string) ([]string, error) {
	res, err := h.Run(ctx, []string{"ls", "-1A", dir}, host.RunOptions{Timeout: 30 * time.Second})
	if err != nil {
		var ce *host.CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "No such file") {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// logSnapshot is the set of CRIU logs in an instance's log directory.
type logSnapshot struct {
	dir   string
	files map[string]bool
}

func (c *Client) logsNow(ctx context.Context, name string) logSnapshot {
	for _, d := range c.LogDirs(name) {
		files, err := listDir(ctx, c.Host, d)
		if err != nil || files == nil {
			continue
		}
		s := logSnapshot{dir: d, files: map[string]bool{}}
		for _, f := range files {
			s.files[f] = true
		}
		return s
	}
	return logSnapshot{dir: c.LogDirs(name)[0], files: map[string]bool{}}
}

// Collected is a log file copied into the run directory.
type Collected struct {
	// Path is the copy in the run directory.
	Path string
	// From is where it was, on the daemon's host.
	From string
	CRIU bool
}

// copyLog copies one file from the client's host into dir under prefix.
func copyLog(ctx context.Context, h host.Host, from, dir, prefix string) (Collected, error) {
	b, err := host.ReadFile(ctx, h, from, 64<<20)
	if err != nil {
		return Collected{}, err
	}
	to := filepath.Join(dir, prefix+path.Base(from))
	if path.Base(path.Dir(from)) == "state" {
		to = filepath.Join(dir, prefix+"state-"+path.Base(from))
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		return Collected{}, err
	}
	return Collected{Path: to, From: from, CRIU: isCRIULog(path.Base(from))}, nil
}

// collect copies into runDir the CRIU logs that appeared in the instance's
// log directory since before, its lxc.log, and dump.log / restore.log of
// its state directory when there is one. Missing files are skipped: an
// instance that moved away takes its logs with it.
func (c *Client) collect(ctx context.Context, name string, before logSnapshot, runDir, prefix string) []Collected {
	var out []Collected
	now := c.logsNow(ctx, name)
	var names []string
	for f := range now.files {
		if (isCRIULog(f) && !before.files[f]) || f == "lxc.log" {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	for _, f := range names {
		if col, err := copyLog(ctx, c.Host, now.dir+"/"+f, runDir, prefix); err == nil {
			out = append(out, col)
		}
	}
	for _, d := range c.StateDirs(name) {
		for _, f := range []string{"dump.log", "restore.log"} {
			if ok, _ := host.Exists(ctx, c.Host, d+"/"+f); ok {
				if col, err := copyLog(ctx, c.Host, d+"/"+f, runDir, prefix); err == nil {
					out = append(out, col)
				}
			}
		}
	}
	return out
}

// watcher keeps copying the CRIU logs that appear in an instance's log
// directory while a move runs: the source's migration_dump_*.log is deleted
// together with the instance when the move ends.
type watcher struct {
	mu     sync.Mutex
	got    map[string]Collected
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *Client) watch(ctx context.Context, name string, before logSnapshot, runDir, prefix string) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{got: map[string]Collected{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			now := c.logsNow(ctx, name)
			for f := range now.files {
				if !isCRIULog(f) || before.files[f] {
					continue
				}
				if col, err := copyLog(ctx, c.Host, now.dir+"/"+f, runDir, prefix); err == nil {
					w.mu.Lock()
					w.got[f] = col
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// stop ends the watch and returns what it copied.
func (w *watcher) stop() []Collected {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Collected
	for _, c := range w.got {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Collected) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// lift picks the lines that explain a failure from collected logs, root
// cause first: known signatures (explain) printed before CRIU's final
// "FAILED." line, then CRIU's other Error lines before it, liblxc's ERROR
// lines written since the operation started, the client's error message,
// CRIU's Warn lines, and last whatever CRIU printed while tearing down after
// "FAILED.". explain.Lift
// drops the lines known to be harmless. It returns the lines and the log
// that holds the first one.
func lift(logs []Collected, since time.Time, cmdErr error) ([]string, string) {
	type cand struct {
		rank int
		line string
		from string
	}
	var cands []cand
	for _, l := range logs {
		b, err := os.ReadFile(l.Path)
		if err != nil {
			continue
		}
		text := string(b)
		if !l.CRIU {
			text = lxcLinesSince(text, since)
		}
		after := afterFailedLine(text)
		matched := map[string]bool{}
		for _, m := range explain.Explain([]explain.Input{{Name: l.Path, Text: text}}) {
			r := 0
			if after[m.Line] {
				r = 5
			}
			matched[m.Line] = true
			cands = append(cands, cand{r, m.Line, l.Path})
		}
		var picked []string
		if l.CRIU {
			picked = explain.Lift(text)
		} else {
			picked = lxcErrors(text)
		}
		for _, line := range picked {
			if matched[line] {
				continue
			}
			r := 1
			switch {
			case after[line] || strings.Contains(line, "FAILED."):
				r = 5
			case !l.CRIU:
				r = 2
			case !strings.Contains(line, "Error ("):
				r = 4
			}
			cands = append(cands, cand{r, line, l.Path})
		}
	}
	// The client's own words come after the logs' errors and before
	// CRIU's warnings: when no log says more, they are the cause.
	var ce *host.CommandError
	if errors.As(cmdErr, &ce) && ce.Stderr != "" {
		for _, line := range strings.Split(ce.Stderr, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				cands = append(cands, cand{3, line, ""})
			}
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.rank - b.rank })
	var lines []string
	var logPath string
	for _, c := range cands {
		if slices.Contains(lines, c.line) {
			continue
		}
		if logPath == "" && c.from != "" {
			logPath = c.from
		}
		lines = append(lines, c.line)
	}
	return lines, logPath
}

// afterFailedLine is the set of lines CRIU printed after its final
// "Dumping FAILED." / "Restoring FAILED." (teardown noise).
func afterFailedLine(text string) map[string]bool {
	out := map[string]bool{}
	lines := strings.Split(text, "\n")
	last := -1
	for i, line := range lines {
		if strings.Contains(line, "Dumping FAILED.") || strings.Contains(line, "Restoring FAILED.") {
			last = i
		}
	}
	if last < 0 {
		return out
	}
	for _, line := range lines[last+1:] {
		out[strings.TrimRight(line, "\r")] = true
	}
	return out
}

// lxcLinesSince keeps the liblxc log lines stamped at or after since (lxc.log
// survives a stateful restore and holds the instance's whole history).
// Lines without a readable stamp are kept.
func lxcLinesSince(text string, since time.Time) string {
	if since.IsZero() {
		return text
	}
	var keep []string
	cut := since.UTC().Add(-time.Second)
	for _, line := range strings.Split(text, "\n") {
		if ts, ok := lxcStamp(line); ok && ts.Before(cut) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// lxcStamp reads the time of a liblxc log line:
// "lxc c1 20261128123236.717 ERROR ..." or "lxc 20261128123236.717 ...".
func lxcStamp(line string) (time.Time, bool) {
	f := strings.Fields(line)
	for i := 1; i < len(f) && i < 3; i++ {
		if len(f[i]) == 18 && f[i][14] == '.' {
			if t, err := time.Parse("20060102150405.000", f[i]); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// lxcErrors returns liblxc's ERROR lines, without the teardown noise that
// follows every failed start (lost command sockets).
func lxcErrors(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, " ERROR ") {
			continue
		}
		if strings.Contains(line, "af_unix") || strings.Contains(line, "lxc_cmd_rsp_recv_fds") {
			continue
		}
		out = append(out, strings.TrimRight(line, "\r"))
	}
	return out
}
