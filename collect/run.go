package collect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// RunDir collects one migrate run from the local run store: its journal,
// every CRIU log (dump, restore, page-server, lazy-pages) and the stats
// files, plus command.txt: the command the user ran, its error and the
// failed steps with the lines lifted from their logs.
type RunDir struct {
	Store migrate.Store
	ID    string
}

func (r RunDir) Name() string { return "run" }

// Collect reads from the local disk: the run store is where ferry ran, h is
// ignored.
func (r RunDir) Collect(ctx context.Context, _ host.Host, lim Limits) []Output {
	j, err := r.Store.Load(r.ID)
	if err != nil {
		return []Output{{Name: "journal.json", Source: filepath.Join(r.Store.RunDir(r.ID), "journal.json"), ExitCode: -1, OriginalSize: -1, Err: err}}
	}
	cmd := []byte(CommandText(j))
	outs := []Output{{Name: "command.txt", Source: "ferry run " + j.ID, Data: cmd, ExitCode: -1, OriginalSize: int64(len(cmd))}}
	dir := r.Store.RunDir(r.ID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return append(outs, Output{Name: "_run-dir", Source: dir, ExitCode: -1, OriginalSize: -1, Err: err})
	}
	local := host.Local{}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || skipRunFile(n) {
			continue
		}
		o := readFile(ctx, local, filepath.Join(dir, n), n, lim)
		o.Binary = strings.HasPrefix(n, "stats-")
		outs = append(outs, o)
	}
	// Logs a step names outside the run directory (a daemon's state dir).
	for _, s := range j.Steps {
		if s.Log == "" || filepath.Dir(s.Log) == "." {
			continue
		}
		p := s.Log
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		outs = append(outs, readFile(ctx, local, p, "step-"+fileName(s.Log), lim))
	}
	return outs
}

// skipRunFile leaves out bundles made earlier for this run and temporary
// files.
func skipRunFile(n string) bool {
	return strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".tar.gz") || strings.HasSuffix(n, ".tar.zst") ||
		strings.HasSuffix(n, ".sha256") || strings.HasSuffix(n, ".img")
}

// CommandText is the human summary of a run for a bug report: the command,
// the outcome and error, every step with its timing, and the lines lifted
// from the failed steps' logs.
func CommandText(j *migrate.Journal) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ %s\n", host.Quote(j.Command))
	fmt.Fprintf(&b, "run:       %s (%s of %s, driver %s)\n", j.ID, j.Operation, j.Target, j.Driver)
	fmt.Fprintf(&b, "result:    %s\n", j.Result)
	if j.Error != "" {
		fmt.Fprintf(&b, "error:     %s\n", j.Error)
	}
	fmt.Fprintf(&b, "source:    %s\n", j.Source)
	if j.Dest != "" {
		fmt.Fprintf(&b, "target:    %s\n", j.Dest)
	}
	b.WriteString("\nsteps:\n")
	for _, s := range j.Steps {
		fmt.Fprintf(&b, "  %-12s %-8s on %s, %s", s.Name, s.Result, s.Host, s.Duration)
		if s.Log != "" {
			fmt.Fprintf(&b, ", log %s", s.Log)
		}
		b.WriteString("\n")
		if s.Error != "" {
			fmt.Fprintf(&b, "    error: %s\n", s.Error)
		}
		for _, l := range s.Lifted {
			fmt.Fprintf(&b, "    | %s\n", l)
		}
	}
	return b.String()
}

// runSummary is the manifest's view of a journal.
func runSummary(j *migrate.Journal) *bundle.Run {
	return &bundle.Run{ID: j.ID, Operation: j.Operation, Command: j.Command, Target: j.Target, Result: j.Result, Error: j.Error}
}
