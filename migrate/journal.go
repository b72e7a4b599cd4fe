package migrate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// JournalSchema versions the journal.json format.
const JournalSchema = "ferry.run/v1"

// Step results.
const (
	StepRunning = "running" // started, not finished: ferry died in it
	StepOK      = "ok"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// Run results.
const (
	RunRunning    = "running"
	RunOK         = "ok"
	RunFailed     = "failed"
	RunRolledBack = "rolled-back" // failed, and the workload was brought back on the source
)

// Journal is the record of one operation: what was asked, every step with
// its host and timing, the CRIU logs and the lines lifted from them. It is
// rewritten after every step, so a ferry killed mid-run leaves a journal
// whose last step is "running".
type Journal struct {
	Schema    string    `json:"schema"`
	ID        string    `json:"id"`
	Operation string    `json:"operation"` // checkpoint, restore, migrate
	Command   []string  `json:"command"`
	Driver    string    `json:"driver"`
	Target    string    `json:"target"`
	Source    string    `json:"source"`
	Dest      string    `json:"destination,omitempty"`
	ImagesDir string    `json:"images_dir"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended"`
	Result    string    `json:"result"`
	Error     string    `json:"error,omitempty"`
	// Workload is where the workload runs (or lies) after the run, for
	// `ferry runs recover`: e.g. "pid:1234 on local" or "images in DIR".
	Workload string `json:"workload"`
	Steps    []Step `json:"steps"`
	Stats    *Stats `json:"stats,omitempty"`
}

// Step is one timed step of a run.
type Step struct {
	Name     string        `json:"name"`
	Host     string        `json:"host"`
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"`
	Duration time.Duration `json:"duration_ns"`
	Result   string        `json:"result"`
	Error    string        `json:"error,omitempty"`
	// Log is the step's CRIU log, relative to the run directory.
	Log string `json:"log,omitempty"`
	// Lifted are the Error and Warn lines of Log that matter (known
	// harmless lines removed), root cause first.
	Lifted []string          `json:"lifted,omitempty"`
	Notes  map[string]string `json:"notes,omitempty"`
}

// Stats are CRIU's own figures for a run plus ferry's downtime measurement.
type Stats struct {
	// Downtime is from the source being frozen until the workload runs
	// again (on the target, or on the source after a restore).
	Downtime      time.Duration `json:"downtime_ns"`
	FreezingTime  time.Duration `json:"freezing_ns"`
	FrozenTime    time.Duration `json:"frozen_ns"`
	MemdumpTime   time.Duration `json:"memdump_ns"`
	MemwriteTime  time.Duration `json:"memwrite_ns"`
	PagesScanned  uint64        `json:"pages_scanned"`
	PagesWritten  uint64        `json:"pages_written"`
	RestoreTime   time.Duration `json:"restore_ns"`
	ForkingTime   time.Duration `json:"forking_ns"`
	PagesRestored uint64        `json:"pages_restored"`
	ImageBytes    int64         `json:"image_bytes"`
}

// Store keeps run directories: DIR/<id>/journal.json and the run's logs.
type Store struct {
	Dir string
}

// DefaultStoreDir is /var/lib/ferry/runs for root, the XDG state directory
// otherwise; $FERRY_RUNS overrides both.
func DefaultStoreDir(getenv func(string) string) string {
	if d := getenv("FERRY_RUNS"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/ferry/runs"
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "ferry", "runs")
	}
	return filepath.Join(getenv("HOME"), ".local", "state", "ferry", "runs")
}

var runID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}-[a-z]+-[0-9a-f]{6}$`)

// Create makes a new run directory and its first journal.
func (s Store) Create(op string, now time.Time, j Journal) (*Run, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := now.UTC().Format("20060102T150405") + "-" + op + "-" + hex.EncodeToString(b[:])
	dir := filepath.Join(s.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	j.Schema, j.ID, j.Operation, j.Started, j.Result = JournalSchema, id, op, now, RunRunning
	r := &Run{Dir: dir, journal: j}
	return r, r.save()
}

// Load reads one run's journal.
func (s Store) Load(id string) (*Journal, error) {
	if !runID.MatchString(id) {
		return nil, &RunNotFoundError{ID: id, Reason: "not a run id"}
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, id, "journal.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &RunNotFoundError{ID: id, Reason: "no such run in " + s.Dir}
	}
	if err != nil {
		return nil, err
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("run %s: journal.json: %w", id, err)
	}
	if j.Schema != JournalSchema {
		return nil, fmt.Errorf("run %s: journal schema %q, this ferry reads %q", id, j.Schema, JournalSchema)
	}
	return &j, nil
}

// RunDir is the directory of run id.
func (s Store) RunDir(id string) string { return filepath.Join(s.Dir, id) }

// List returns every run's journal, newest first. Unreadable runs are
// skipped.
func (s Store) List() ([]Journal, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Journal
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		j, err := s.Load(e.Name())
		if err != nil {
			continue
		}
		out = append(out, *j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID > out[b].ID })
	return out, nil
}

// RunNotFoundError is an unknown run id.
type RunNotFoundError struct{ ID, Reason string }

func (e *RunNotFoundError) Error() string { return fmt.Sprintf("run %q: %s", e.ID, e.Reason) }
func (e *RunNotFoundError) Hint() string  { return "list the runs with `ferry runs`" }

// Run is a journal being written.
type Run struct {
	Dir     string
	mu      sync.Mutex
	journal Journal
	// Now is the clock (tests inject one).
	Now func() time.Time
	// OnStep, when set, is told when a step starts (Result "running") and
	// when it ends: the progress lines on stderr.
	OnStep func(Step)
}

func (r *Run) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// ID is the run's id.
func (r *Run) ID() string { return r.journal.ID }

// Journal returns a copy of the journal as it is now.
func (r *Run) Journal() Journal {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.journal
	j.Steps = append([]Step(nil), j.Steps...)
	return j
}

// Update changes the journal and saves it.
func (r *Run) Update(f func(*Journal)) error {
	r.mu.Lock()
	f(&r.journal)
	r.mu.Unlock()
	return r.save()
}

// StepFunc does a step's work; it may fill in the step's Log, Lifted and
// Notes.
type StepFunc func(s *Step) error

// Step runs fn as a named step on host, timing it and saving the journal
// before (result "running") and after.
func (r *Run) Step(name, host string, fn StepFunc) error {
	r.mu.Lock()
	i := len(r.journal.Steps)
	r.journal.Steps = append(r.journal.Steps, Step{Name: name, Host: host, Start: r.now(), Result: StepRunning})
	started := r.journal.Steps[i]
	r.mu.Unlock()
	if err := r.save(); err != nil {
		return err
	}
	if r.OnStep != nil {
		r.OnStep(started)
	}
	s := Step{Name: name, Host: host}
	err := fn(&s)
	r.mu.Lock()
	st := &r.journal.Steps[i]
	st.End = r.now()
	st.Duration = st.End.Sub(st.Start)
	st.Log, st.Lifted, st.Notes = s.Log, s.Lifted, s.Notes
	st.Result = StepOK
	if err != nil {
		st.Result, st.Error = StepFailed, err.Error()
	}
	ended := *st
	r.mu.Unlock()
	if r.OnStep != nil {
		r.OnStep(ended)
	}
	if serr := r.save(); serr != nil && err == nil {
		return serr
	}
	return err
}

// stepLog is the path of the CRIU log of the last step named name ("" when
// it has none).
func (r *Run) stepLog(name string) string {
	j := r.Journal()
	for i := len(j.Steps) - 1; i >= 0; i-- {
		if s := j.Steps[i]; s.Name == name && s.Log != "" {
			if filepath.IsAbs(s.Log) {
				return s.Log
			}
			return filepath.Join(r.Dir, s.Log)
		}
	}
	return ""
}

// Skip records a step that was not run, and why.
func (r *Run) Skip(name, host, why string) error {
	return r.Update(func(j *Journal) {
		now := r.now()
		j.Steps = append(j.Steps, Step{Name: name, Host: host, Start: now, End: now, Result: StepSkipped, Notes: map[string]string{"why": why}})
	})
}

// Finish records the outcome.
func (r *Run) Finish(result string, err error) error {
	return r.Update(func(j *Journal) {
		j.Ended = r.now()
		j.Result = result
		if err != nil {
			j.Error = err.Error()
		}
	})
}

// end finishes the run with result and returns its journal; a failed
// step's err comes back as an *OpError naming op, the run and the step.
func (r *Run) end(result, op, step string, err error) (*Journal, error) {
	_ = r.Finish(result, err)
	j := r.Journal()
	if err == nil {
		return &j, nil
	}
	return &j, &OpError{Op: op, RunID: r.ID(), RunDir: r.Dir, Step: step, Err: err}
}

// save writes journal.json atomically (temp file + rename).
func (r *Run) save() error {
	r.mu.Lock()
	b, err := json.MarshalIndent(r.journal, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.Dir, ".journal.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save journal: %w", err)
	}
	return os.Rename(tmp, filepath.Join(r.Dir, "journal.json"))
}
