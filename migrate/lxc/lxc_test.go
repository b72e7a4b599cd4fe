package lxc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
)

func TestLiftRootCauseFirst(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		criu  bool
		since time.Time
		want  string
	}{
		{
			name: "lxd stock restore: console, not the teardown noise",
			file: "lxd-5.0.2-restore-console-failure.lxc.log",
			want: "lxc.console.path configured on source host but not target",
		},
		{
			name:  "lines before the operation are left out",
			file:  "lxd-5.0.2-restore-console-failure.lxc.log",
			since: time.Date(2026, 11, 28, 12, 32, 38, 0, time.UTC),
			want:  "criu process exited 1",
		},
		{
			name: "incus restore with an apparmor profile: the LSM line, not RLIMIT",
			file: "incus-6.0.4-restore-apparmor-failure.criu.log",
			criu: true,
			want: "apparmor LSM specified but apparmor not supported by kernel",
		},
		{
			name: "incus timens EACCES: before the cgroupd teardown line",
			file: "incus-6.0.4-restore-timens-eacces.criu.log",
			criu: true,
			want: "Unable to open timens-0.img: Permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			lines, from := lift([]Collected{{Path: path, CRIU: tt.criu}}, tt.since, nil)
			if len(lines) == 0 {
				t.Fatal("nothing lifted")
			}
			if !strings.Contains(lines[0], tt.want) {
				t.Errorf("first lifted line %q, want one containing %q; all: %q", lines[0], tt.want, lines)
			}
			if from != path {
				t.Errorf("log %q, want %q", from, path)
			}
			for _, l := range lines {
				if strings.Contains(l, "RLIMIT_NOFILE") || strings.Contains(l, "af_unix") {
					t.Errorf("harmless line lifted: %q", l)
				}
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{"5.0.2", Version{5, 0, 2}, false},
		{"6.6", Version{6, 6, 0}, false},
		{"6.0.4-rc1", Version{6, 0, 4}, false},
		{"six", Version{}, true},
		{"6", Version{}, true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseVersion(%q) error %v, want error %v", tt.in, err, tt.wantErr)
		}
		if got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestProcessesRoundTrip(t *testing.T) {
	out := "6\tsh -c i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.2; done \n1\tinit \n\n12\tsleep 0.2 \nbad line\n"
	got := parseProcesses(out)
	want := []Process{{1, "init"}, {6, "sh -c i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.2; done"}, {12, "sleep 0.2"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("parseProcesses (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, decodeProcesses(encodeProcesses(got))); d != "" {
		t.Fatalf("encode/decode (-want +got):\n%s", d)
	}
}

func TestContinuity(t *testing.T) {
	before := []Process{{1, "init"}, {6, "sh -c counter"}}
	if err := checkContinuity("c1", before, append(before, Process{30, "sleep 0.2"})); err != nil {
		t.Errorf("same processes: %v", err)
	}
	err := checkContinuity("c1", before, []Process{{1, "init"}})
	var lost *LostStateError
	if !errors.As(err, &lost) || len(lost.Missing) != 1 || lost.Missing[0].PID != 6 {
		t.Fatalf("cold start: got %v, want the counter reported missing", err)
	}
	// A different process under the same pid is not the same process.
	if err := checkContinuity("c1", before, []Process{{1, "init"}, {6, "other"}}); err == nil {
		t.Error("pid reused by another command: want an error")
	}
}

// fakeHost answers commands from a table and fails the test on any other
// command, and on an expectation never used.
type fakeHost struct {
	t    *testing.T
	want map[string]fakeAnswer
	used map[string]bool
	// then holds answers that replace want[k] in turn once it was used.
	then map[string][]fakeAnswer
	// files are what Open finds.
	files map[string]string
}

type fakeAnswer struct {
	out  string
	exit int
	err  string
}

func newFake(t *testing.T, want map[string]fakeAnswer) *fakeHost {
	f := &fakeHost{t: t, want: want, used: map[string]bool{}}
	t.Cleanup(func() {
		for k := range want {
			if !f.used[k] {
				t.Errorf("expected command never run: %s", k)
			}
		}
	})
	return f
}

func (f *fakeHost) Name() string { return "fake" }
func (f *fakeHost) Open(_ context.Context, path string) (io.ReadCloser, error) {
	if b, ok := f.files[path]; ok {
		return io.NopCloser(strings.NewReader(b)), nil
	}
	return nil, os.ErrNotExist
}
func (f *fakeHost) Run(_ context.Context, argv []string, _ host.RunOptions) (*host.Result, error) {
	k := strings.Join(argv, " ")
	a, ok := f.want[k]
	if !ok {
		f.t.Errorf("unexpected command: %s", k)
		return nil, &host.CommandError{Host: "fake", Argv: argv, ExitCode: -1, Err: host.ErrNotFound}
	}
	if f.used[k] && len(f.then[k]) > 0 {
		a, f.then[k] = f.then[k][0], f.then[k][1:]
		f.want[k] = a
	}
	f.used[k] = true
	res := &host.Result{Argv: argv, Stdout: []byte(a.out), ExitCode: a.exit}
	if a.exit != 0 || a.err != "" {
		return res, &host.CommandError{Host: "fake", Argv: argv, ExitCode: a.exit, Stderr: a.err, Err: errFromAnswer(a)}
	}
	return res, nil
}

func errFromAnswer(a fakeAnswer) error {
	if a.exit < 0 {
		return host.ErrNotFound
	}
	return fmt.Errorf("exit status %d", a.exit)
}

func server(version string) string {
	return `{"api_extensions":[],"environment":{"server_version":"` + version + `","storage":"dir","driver":"lxc","driver_version":"5.0.2"}}`
}

func TestPreflightRefuses(t *testing.T) {
	criuOK := fakeAnswer{out: "Version: 4.2.1\n"}
	noDaemon := fakeAnswer{exit: 1}
	tests := []struct {
		name  string
		kind  string
		cmds  map[string]fakeAnswer
		files map[string]string
		op    Op
		want  any
	}{
		{
			name: "the daemon's PATH finds Debian's CRIU 3.17 first",
			kind: migrate.KindIncus,
			cmds: map[string]fakeAnswer{
				"incus query /1.0":         {out: server("6.0.4")},
				"pgrep -o -x incusd":       {out: "4242\n"},
				"/usr/sbin/criu --version": {out: "Version: 3.17.1\n"},
			},
			files: map[string]string{
				"/proc/4242/environ": "PATH=/usr/libexec/incus:/usr/sbin:/usr/local/sbin\x00HOME=/root\x00",
				"/usr/sbin/criu":     "",
			},
			op:   Op{Kind: OpSnapshot, Instance: "c1", Snapshot: "s1"},
			want: new(*CapabilityError),
		},
		{
			name: "lxd 6.6 has no container live migration",
			kind: migrate.KindLXD,
			cmds: map[string]fakeAnswer{"lxc query /1.0": {out: server("6.6")}, "pgrep -o -x lxd": noDaemon, "criu --version": criuOK},
			op:   Op{Kind: OpSnapshot, Instance: "c1", Snapshot: "s1"},
			want: new(*CapabilityError),
		},
		{
			name: "incus without migration.stateful",
			kind: migrate.KindIncus,
			cmds: map[string]fakeAnswer{
				"incus query /1.0":              {out: server("6.0.4")},
				"pgrep -o -x incusd":            noDaemon,
				"criu --version":                criuOK,
				"incus query /1.0/instances/c1": {out: `{"name":"c1","status":"Running","type":"container","expanded_config":{}}`},
			},
			op:   Op{Kind: OpStop, Instance: "c1"},
			want: new(*StatefulConfigError),
		},
		{
			name: "restore of a stateless snapshot would cold-start",
			kind: migrate.KindLXD,
			cmds: map[string]fakeAnswer{
				"lxc query /1.0":                           {out: server("5.0.2")},
				"pgrep -o -x lxd":                          noDaemon,
				"criu --version":                           criuOK,
				"lxc query /1.0/instances/c1":              {out: `{"name":"c1","status":"Running","type":"container"}`},
				"lxc query /1.0/instances/c1/snapshots/s1": {out: `{"name":"s1","stateful":false}`},
			},
			op:   Op{Kind: OpRestore, Instance: "c1", Snapshot: "s1"},
			want: new(*NotStatefulError),
		},
		{
			name: "stateful stop of a stopped instance",
			kind: migrate.KindLXD,
			cmds: map[string]fakeAnswer{
				"lxc query /1.0":              {out: server("5.0.2")},
				"pgrep -o -x lxd":             noDaemon,
				"criu --version":              criuOK,
				"lxc query /1.0/instances/c1": {out: `{"name":"c1","status":"Stopped","type":"container"}`},
			},
			op:   Op{Kind: OpStop, Instance: "c1"},
			want: new(*StatusError),
		},
		{
			name: "daemon does not answer",
			kind: migrate.KindIncus,
			cmds: map[string]fakeAnswer{"incus query /1.0": {exit: 1, err: "Error: Get \"http://unix.socket/1.0\": dial unix /var/lib/incus/unix.socket: connect: no such file or directory"}},
			op:   Op{Kind: OpStart, Instance: "c1"},
			want: new(*DaemonError),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFake(t, tt.cmds)
			h.files = tt.files
			op := tt.op
			op.Client = &Client{Host: h, Kind: tt.kind}
			r := &Runner{Store: migrate.Store{Dir: t.TempDir()}}
			j, err := r.Run(context.Background(), op)
			var oe *migrate.OpError
			if !errors.As(err, &oe) || oe.Step != migrate.StepPreflight {
				t.Fatalf("error %v: want a preflight failure", err)
			}
			if !errors.As(err, tt.want) {
				t.Errorf("error %v (%T): want %T", err, errors.Unwrap(err), tt.want)
			}
			if !strings.HasSuffix(j.Workload, "(untouched)") || j.Result != migrate.RunFailed {
				t.Errorf("journal workload %q result %q", j.Workload, j.Result)
			}
		})
	}
}

// A move that exits 0 but leaves the target stopped (measured with Incus
// 6.0.4: the source deleted, running state lost) is a failed move.
func TestMoveTargetStoppedIsFailure(t *testing.T) {
	ps := fakeAnswer{out: "1\tinit \n6\tsh -c counter \n"}
	noDir := fakeAnswer{exit: 2, err: "ls: cannot access '/var/log/incus/c1': No such file or directory"}
	h := newFake(t, map[string]fakeAnswer{
		"incus query a:/1.0":                    {out: server("6.0.4")},
		"incus query b:/1.0":                    {out: server("6.0.4")},
		"incus query a:/1.0/instances/c1":       {out: `{"name":"c1","status":"Running","type":"container","expanded_config":{"migration.stateful":"true"}}`},
		"incus query b:/1.0/instances/c1":       {exit: 1, err: "Error: Instance not found"},
		"incus query b:/1.0/instances/c1/state": {out: `{"status":"Stopped","pid":0}`},
		"incus exec a:c1 -- sh -c " + psScript:  ps,
		"ls -1A /var/log/incus/c1":              noDir,
		"ls -1A /var/lib/incus/logs/c1":         noDir,
		"incus move a:c1 b:c1":                  {},
	})
	a := &Client{Host: h, Kind: migrate.KindIncus, Remote: "a"}
	b := &Client{Host: h, Kind: migrate.KindIncus, Remote: "b"}
	r := &Runner{Store: migrate.Store{Dir: t.TempDir()}, Gap: time.Millisecond}
	j, err := r.Run(context.Background(), Op{Kind: OpMove, Client: a, Instance: "c1", Dest: b, DestRemote: "b"})
	var sm *StatusMismatchError
	if !errors.As(err, &sm) || sm.Status != "Stopped" || sm.Want != "Running" {
		t.Fatalf("error %v: want the stopped target reported", err)
	}
	var oe *migrate.OpError
	if !errors.As(err, &oe) || oe.Step != migrate.StepVerify {
		t.Fatalf("error %v: want the verify step to fail (the daemon exited 0)", err)
	}
	if j.Result != migrate.RunFailed || !strings.Contains(j.Error, "is Stopped, not Running") {
		t.Errorf("journal result %q error %q", j.Result, j.Error)
	}
}

// LXD 5.0.2 fails a move after the target took over ("Failed to delete
// original instance after copying it"): ferry verifies the target, then
// deletes the stopped source copy, and says so in the journal.
func TestMoveSourceDeleteRaceIsFinished(t *testing.T) {
	ps := fakeAnswer{out: "1\tinit \n6\tsh -c counter \n"}
	noDir := fakeAnswer{exit: 2, err: "ls: cannot access: No such file or directory"}
	h := newFake(t, map[string]fakeAnswer{
		"lxc query a:/1.0":                            {out: server("5.0.2")},
		"lxc query b:/1.0":                            {out: server("5.0.2")},
		"lxc query a:/1.0/instances/c1":               {out: `{"name":"c1","status":"Running","type":"container"}`},
		"lxc query b:/1.0/instances/c1":               {exit: 1, err: "Error: Instance not found"},
		"lxc query b:/1.0/instances/c1/state":         {out: `{"status":"Running","pid":42}`},
		"lxc exec a:c1 -- sh -c " + psScript:          ps,
		"lxc exec b:c1 -- sh -c " + psScript:          ps,
		"lxc exec b:c1 -- touch /.ferry-verify-write": {},
		"lxc exec b:c1 -- rm -f /.ferry-verify-write": {},
		"ls -1A /var/log/lxd/c1":                      noDir,
		"ls -1A /var/snap/lxd/common/lxd/logs/c1":     noDir,
		"lxc delete a:c1":                             {},
		"lxc move a:c1 b:c1":                          {exit: 1, err: `Error: Failed to delete original instance after copying it: Failed to create instance delete operation: Instance is busy running a "stop" operation`},
	})
	h.then = map[string][]fakeAnswer{
		"lxc query a:/1.0/instances/c1": {{out: `{"name":"c1","status":"Stopped","type":"container"}`}},
	}
	a := &Client{Host: h, Kind: migrate.KindLXD, Remote: "a"}
	b := &Client{Host: h, Kind: migrate.KindLXD, Remote: "b"}
	r := &Runner{Store: migrate.Store{Dir: t.TempDir()}, Gap: time.Millisecond}
	j, err := r.Run(context.Background(), Op{Kind: OpMove, Client: a, Instance: "c1", Dest: b, DestRemote: "b"})
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	var names []string
	for _, s := range j.Steps {
		names = append(names, s.Name+":"+s.Result)
	}
	want := []string{"preflight:ok", "record-processes:ok", "move:failed", "verify:ok", "delete-source-copy:ok"}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if j.Result != migrate.RunOK || !strings.Contains(j.Workload, "on lxd:b@fake (running)") {
		t.Errorf("result %q workload %q", j.Result, j.Workload)
	}
}

// Processes all there but held by a tracer (LXD 5.0.2 after a move whose
// target could not run CRIU): the instance does not run, whatever its
// status says.
func TestVerifyRunningCatchesStoppedProcesses(t *testing.T) {
	tests := []struct {
		name, ps string
		want     []Process
	}{
		{"running", "1\tinit \n6\tsh -c counter \n", nil},
		{"traced", "stopped\t1\tt\n1\tinit \nstopped\t6\tt\n6\tsh -c counter \n", []Process{{1, "init (state t)"}, {6, "sh -c counter (state t)"}}},
		{"stopped", "1\tinit \nstopped\t6\tT\n6\tsh -c counter \n", []Process{{6, "sh -c counter (state T)"}}},
	}
	for _, tt := range tests {
		answers := map[string]fakeAnswer{
			"lxc query a:/1.0/instances/c1/state": {out: `{"status":"Running","pid":42}`},
			"lxc exec a:c1 -- sh -c " + psScript:  {out: tt.ps},
		}
		if tt.want == nil {
			answers["lxc exec a:c1 -- touch /.ferry-verify-write"] = fakeAnswer{}
			answers["lxc exec a:c1 -- rm -f /.ferry-verify-write"] = fakeAnswer{}
		}
		h := newFake(t, answers)
		c := &Client{Host: h, Kind: migrate.KindLXD, Remote: "a"}
		_, err := c.VerifyRunning(context.Background(), "c1", []Process{{1, "init"}, {6, "sh -c counter"}})
		var se *StoppedError
		if tt.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if !errors.As(err, &se) {
			t.Fatalf("%s: error %v, want a StoppedError", tt.name, err)
		}
		if d := cmp.Diff(tt.want, se.Stopped); d != "" {
			t.Errorf("%s: stopped (-want +got):\n%s", tt.name, d)
		}
	}
}
