package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

// MoveRecordFile is the file in a run directory that says what a move to a
// remote host put there, for `ferry runs recover`.
const MoveRecordFile = "remote-move.json"

// moveRecord is what a ferry that died mid-move left on the target.
type moveRecord struct {
	// Dest is the target's host spec, as ferry was given it.
	Dest      string `json:"dest"`
	RemoteDir string `json:"remote_dir"`
	PsPidFile string `json:"page_server_pidfile,omitempty"`
}

func (p *Placement) save() error {
	b, err := json.MarshalIndent(moveRecord{Dest: p.Dest.Name(), RemoteDir: p.remoteDir, PsPidFile: p.psPidFile}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.runDir, MoveRecordFile), append(b, '\n'), 0o600)
}

// RecordedTarget returns the target host spec of the remote move recorded
// in runDir ("" when the run is not one, or died before it reached the
// target).
func RecordedTarget(runDir string) string {
	r, err := loadRecord(runDir)
	if err != nil {
		return ""
	}
	return r.Dest
}

func loadRecord(runDir string) (*moveRecord, error) {
	b, err := os.ReadFile(filepath.Join(runDir, MoveRecordFile))
	if err != nil {
		return nil, err
	}
	var r moveRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", MoveRecordFile, err)
	}
	return &r, nil
}

// CleanTarget removes, on dest, what the move recorded in runDir left there
// when its ferry died: the page server, a tree restored but never verified
// (the source was never removed, so the target's copy is the one to go),
// and the run's directory. j is the run's journal. It returns what it did.
func CleanTarget(ctx context.Context, dest host.Host, runDir string, j *migrate.Journal) (string, error) {
	r, err := loadRecord(runDir)
	if err != nil {
		return "", err
	}
	if r.RemoteDir == "" {
		return "", errors.New(MoveRecordFile + ": no remote directory")
	}
	var errs []error
	did := "cleaned " + r.RemoteDir + " on " + dest.Name()
	if r.PsPidFile != "" {
		if b, err := host.ReadFile(ctx, dest, r.PsPidFile, 64); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				errs = append(errs, KillTree(ctx, dest, pid))
				did += "; killed its page server"
			}
		}
	}
	for _, s := range j.Steps {
		if s.Name == migrate.StepRestore && s.Notes["pid"] != "" {
			if pid, err := strconv.Atoi(s.Notes["pid"]); err == nil && Runs(ctx, dest, pid) == nil {
				errs = append(errs, KillTree(ctx, dest, pid))
				did += "; killed the unverified copy (pid " + s.Notes["pid"] + ")"
			}
		}
	}
	errs = append(errs, Remove(ctx, dest, r.RemoteDir))
	return did, errors.Join(errs...)
}
