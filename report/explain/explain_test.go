package explain_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/report/explain"
)

func readTestdata(t testing.TB, name string) explain.Input {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return explain.Input{Name: name, Text: string(b)}
}

func TestDatabase(t *testing.T) {
	t.Parallel()
	db := explain.Default()
	sigs := db.Signatures()
	if len(sigs) < 40 {
		t.Errorf("%d signatures, want at least 40", len(sigs))
	}
	used := map[string]int{}
	for _, s := range sigs {
		used[s.Category]++
	}
	for _, c := range explain.Categories {
		if used[c] == 0 {
			t.Errorf("no signature for category %s", c)
		}
	}
	if len(db.Wrappers()) == 0 || len(db.Harmless()) == 0 {
		t.Error("no wrapper or harmless patterns")
	}
}

// TestSignatureExamples: every example line, alone, is explained by its own
// signature and by nothing else.
func TestSignatureExamples(t *testing.T) {
	t.Parallel()
	db := explain.Default()
	for _, s := range db.Signatures() {
		for _, ex := range s.Examples {
			t.Run(s.ID, func(t *testing.T) {
				t.Parallel()
				got := db.Explain([]explain.Input{{Name: "example", Text: ex}})
				if len(got) != 1 {
					t.Fatalf("example %q: %d matches, want 1: %+v", ex, len(got), got)
				}
				m := got[0]
				want := explain.Match{ID: s.ID, Category: s.Category, Line: ex, LineNo: 1, File: "example",
					Cause: s.Cause, Fix: s.Fix, URL: s.URL, Conditions: s.Conditions}
				if diff := cmp.Diff(want, m); diff != "" {
					t.Errorf("example %q (-want +got):\n%s", ex, diff)
				}
			})
		}
	}
}

// TestWrappersAndHarmless: lines that only say something failed, and lines
// that are harmless on ferry's machines, are never causes.
func TestWrappersAndHarmless(t *testing.T) {
	t.Parallel()
	db := explain.Default()
	for _, w := range db.Wrappers() {
		for _, ex := range w.Examples {
			if !db.IsWrapper(ex) {
				t.Errorf("wrapper example %q is not recognised as a wrapper", ex)
			}
			if got := db.Explain([]explain.Input{{Name: "w", Text: ex}}); len(got) != 0 {
				t.Errorf("wrapper %q matched %+v", ex, got)
			}
		}
	}
	for _, h := range db.Harmless() {
		if !db.IsHarmless(h.Example) {
			t.Errorf("harmless example %q is not recognised", h.Example)
		}
		if got := db.Explain([]explain.Input{{Name: "h", Text: h.Example}}); len(got) != 0 {
			t.Errorf("harmless %q matched %+v", h.Example, got)
		}
	}
}

type top struct {
	ID, Category string
	LineNo       int
}

// TestSamples runs the real logs captured on ferry's test machines.
func TestSamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files []string
		want  []top // all matches, ranked
	}{
		{"criu 4.2.1 restore pid clash, not the RLIMIT line", []string{"criu-4.2.1-restore-pid-clash.log"},
			[]top{{"criu-fork-pid-exists", "pid-conflict", 83}}},
		{"criu 3.17 on kernel 6.18", []string{"criu-3.17-dump-vdso-failure.log"},
			[]top{{"criu-vdso-rt-area-bounds", "kernel-vdso", 27}, {"criu-vdso-symtable", "kernel-vdso", 28}}},
		{"lxd snapshot output with criu 3.17", []string{"lxd-stateful-snapshot-with-criu-3.17.txt"},
			[]top{{"criu-vdso-rt-area-bounds", "kernel-vdso", 4}, {"criu-vdso-symtable", "kernel-vdso", 5}}},
		{"network lock without iptables", []string{"criu-4.2.1-network-lock-iptables-missing.log"},
			[]top{{"criu-iptables-restore-missing", "network-lock", 165}, {"criu-locking-network-failed", "network-lock", 169}}},
		{"lxd stateful restore console", []string{"lxd-stateful-restore-console-failure.cli.txt", "lxd-stateful-restore-console-failure.lxc.log"},
			[]top{{"lxc-console-path-mismatch", "tty", 33}}},
		{"incus stateful restore console", []string{"incus-stateful-restore-console-failure.cli.txt", "incus-stateful-restore-console-failure.lxc.log"},
			[]top{{"lxc-console-path-mismatch", "tty", 136}}},
		{"incus apparmor after console none", []string{"incus-stateful-restore-apparmor-failure.criu.log"},
			[]top{{"criu-apparmor-not-supported", "lsm-denied", 51}}},
		{"incus apparmor cli output", []string{"incus-stateful-restore-apparmor-failure.cli.txt"},
			[]top{{"criu-apparmor-not-supported", "lsm-denied", 4}}},
		{"incus move shmounts, cgroupd teardown last", []string{"incus-move-rc0-state-lost.restore-target.log"},
			[]top{{"criu-deleted-bind-source", "external-resource", 459}, {"criu-cgroupd-recv", "cgroup", 465}}},
		// The captured CLI output of the failed move back holds only progress
		// bars: nothing to explain.
		{"incus move back cli", []string{"incus-move-back-shmounts-failure.cli.txt"}, nil},
		{"incus start after stateful stop cli", []string{"incus-start-after-stateful-stop-failure.cli.txt"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var inputs []explain.Input
			for _, f := range tt.files {
				inputs = append(inputs, readTestdata(t, f))
			}
			var got []top
			for _, m := range explain.Explain(inputs) {
				got = append(got, top{m.ID, m.Category, m.LineNo})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNothingToExplain: successful runs and success lines match nothing, and
// the result is an empty list, not nil.
func TestNothingToExplain(t *testing.T) {
	t.Parallel()
	for _, f := range []string{
		"criu-4.2.1-process-dump-ok.log", "criu-4.2.1-lxd-snapshot-dump-ok.log",
		"criu-4.2.1-lxd-move-dump-source.log", "criu-4.2.1-lxd-move-restore-target.log",
		"incus-snapshot-dump-ok.criu.log", "lxd-lxc-info-c1-show-log.txt", "incus-incus-info-c1-show-log.tail.txt",
	} {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			got := explain.Explain([]explain.Input{readTestdata(t, f)})
			if got == nil || len(got) != 0 {
				t.Errorf("got %#v, want an empty list", got)
			}
		})
	}
	for _, line := range []string{
		"(00.219052) Dumping finished successfully",
		"(00.310203) Restore finished successfully. Tasks resumed.",
		"Looks good.",
		"(00.000000) Dirty tracking support is OFF",
		"(00.012112) Warn  (criu/kerndat.c:1635): CRIU was built without libnftables support",
		"(00.081988) Warn  (criu/cr-restore.c:1050): Set CLONE_PARENT | CLONE_NEWPID but it might cause restore problem,because not all kernels support such clone flags combinations!",
		"",
	} {
		if got := explain.Explain([]explain.Input{{Name: "line", Text: line}}); got == nil || len(got) != 0 {
			t.Errorf("%q: got %#v, want an empty list", line, got)
		}
	}
	if got := explain.Explain(nil); got == nil || len(got) != 0 {
		t.Errorf("no inputs: got %#v", got)
	}
}

// TestRanking: causes first, in input order; errors after CRIU's final
// FAILED line and symptoms after them; one match per signature and input.
func TestRanking(t *testing.T) {
	t.Parallel()
	log := strings.Join([]string{
		"(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
		"(00.02) Error (criu/cgroup.c:1998): cg: cgroupd: recv req error: No such file or directory",
		"(00.03) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
		"(00.04) Error (criu/cr-restore.c:1237): Can't fork for 27408: File exists",
		"(00.05) Error (criu/cr-restore.c:2331): Restoring FAILED.",
		"(00.06) Error (criu/cr-restore.c:1433): 49 killed by signal 11: Segmentation fault",
	}, "\n")
	other := "Error: Live migration is not supported for containers\n"
	got := explain.Explain([]explain.Input{{Name: "restore.log", Text: log}, {Name: "cli", Text: other}})
	var ids []string
	for _, m := range got {
		ids = append(ids, m.File+":"+m.ID)
	}
	want := []string{
		"restore.log:criu-fork-pid-exists",
		"cli:lxd-container-live-migration-removed",
		"restore.log:criu-restore-segfault",
		"restore.log:criu-cgroupd-recv",
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("ranking (-want +got):\n%s", diff)
	}
	if got[0].LineNo != 3 || got[0].Line != "(00.03) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists" {
		t.Errorf("first match at line %d %q, want the first Can't fork line, 3", got[0].LineNo, got[0].Line)
	}
}

func TestLastLineOnly(t *testing.T) {
	t.Parallel()
	hang := "(00.054296) ----\n(00.054348) Waiting for 54 to trap\n"
	if got := explain.Explain([]explain.Input{{Name: "dump.log", Text: hang}}); len(got) != 1 || got[0].ID != "criu-dump-hang-trap" {
		t.Errorf("hung log: %+v", got)
	}
	finished := hang + "(00.054484) Daemon 54 exited trapping\n"
	if got := explain.Explain([]explain.Input{{Name: "dump.log", Text: finished}}); len(got) != 0 {
		t.Errorf("log going on after the trap: %+v", got)
	}
}

func TestLift(t *testing.T) {
	t.Parallel()
	got := explain.Lift(readTestdata(t, "criu-4.2.1-restore-pid-clash.log").Text)
	want := []string{
		"(00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
		"(00.063253) Error (criu/cr-restore.c:2331): Restoring FAILED.",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lift (-want +got):\n%s", diff)
	}
	got = explain.Lift(readTestdata(t, "incus-move-rc0-state-lost.restore-target.log").Text)
	want = []string{
		"(00.081988) Warn  (criu/cr-restore.c:1050): Set CLONE_PARENT | CLONE_NEWPID but it might cause restore problem,because not all kernels support such clone flags combinations!",
		"(00.252283)      1: Error (criu/mount-v2.c:390): mnt-v2: Can't re-create deleted directory /var/lib/incus/shmounts/c5: Permission denied",
		"(00.259820) Error (criu/cr-restore.c:2331): Restoring FAILED.",
		"(00.263420) Error (criu/cgroup.c:2055): cg: cgroupd: recv req error: No such file or directory",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lift (-want +got):\n%s", diff)
	}
	got = explain.Lift(readTestdata(t, "criu-4.2.1-network-lock-iptables-missing.log").Text)
	if len(got) != 14 || !strings.Contains(got[0], `execvp("iptables-restore"`) {
		t.Errorf("Lift of the network-lock log: %d lines, first %q", len(got), got[0])
	}
	if got := explain.Lift("(00.1) Dumping finished successfully\n"); got == nil || len(got) != 0 {
		t.Errorf("Lift of a clean log: %#v, want empty", got)
	}
}

func TestNormalise(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"(00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists",
			"Error (criu/cr-restore.c:<N>): Can't fork for <N>: File exists"},
		{"(00.252283)      1: Error (criu/mount-v2.c:390): mnt-v2: Can't re-create deleted directory /var/lib/incus/shmounts/c5: Permission denied",
			"Error (criu/mount-v2.c:<N>): mnt-v2: Can't re-create deleted directory /var/lib/incus/shmounts/c5: Permission denied"},
		{"lxc c1 20261128123236.854 ERROR    criu - ../src/lxc/criu.c:exec_criu:467 - Invalid argument - lxc.console.path configured on source host but not target",
			"ERROR    criu - ../src/lxc/criu.c:exec_criu:<N> - Invalid argument - lxc.console.path configured on source host but not target"},
		{"lxc 20261128123237.841 ERROR    af_unix - x", "ERROR    af_unix - x"},
		{"(00.052493) vdso: rt [vdso] 7fd4dbdd7000-7fd4dbdd9000 [vvar] 0x7fd4dbdd1000", "vdso: rt [vdso] <X>-<X> [vvar] <X>"},
		{`Error (criu/util.c:642): execvp("ip6tables-restore", ...) failed`, `Error (criu/util.c:<N>): execvp("ip6tables-restore", ...) failed`},
		{"127514: Error (criu/tty.c:1453): tty: No task found with sid 124454", "Error (criu/tty.c:<N>): tty: No task found with sid <N>"},
		{"x86_64 c5 deadbeef 6a7b -52\r", "x86_64 c5 deadbeef 6a7b -<N>"},
		{"(not a timestamp) 12", "(not a timestamp) <N>"},
	}
	for _, tt := range tests {
		if got := explain.Normalise(tt.in); got != tt.want {
			t.Errorf("Normalise(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	const good = `
  - id: a
    category: tty
    pattern: 'some literal text'
    cause: c
    fix: f
    url: https://github.com/o/r/issues/1
    examples: ['some literal text']
`
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"duplicate id", "signatures:" + good + good, "duplicate id"},
		{"unknown category", "signatures:" + strings.Replace(good, "tty", "ttys", 1), `unknown category "ttys"`},
		{"bad regexp", "signatures:" + strings.Replace(good, "some literal text", "some (literal", 1), "missing closing )"},
		{"no literal", "signatures:" + strings.Replace(good, "'some literal text'", `'\S+ <N>'`, 1), "needs a case-sensitive literal"},
		{"empty fix", "signatures:" + strings.Replace(good, "fix: f", "fix: ''", 1), "empty fix"},
		{"not an issue url", "signatures:" + strings.Replace(good, "/issues/1", "/blob/main/x.c", 1), "want github.com/OWNER/REPO/issues/N"},
		{"http url", "signatures:" + strings.Replace(good, "https://github.com/o/r/issues/1", "http://example.com/x", 1), "want an https link"},
		{"unknown field", "signatures:" + good + "    colour: red\n", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := explain.Load([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := explain.Load([]byte("signatures:" + good)); err != nil {
		t.Errorf("good database: %v", err)
	}
}
