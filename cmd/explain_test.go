package cmd

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/exit"
)

// explainSample is a real log captured on ferry's test machines.
func explainSample(name string) string {
	return filepath.Join("..", "report", "explain", "testdata", name)
}

func runExplain(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	io, out, errOut := testIO()
	io.In = strings.NewReader(stdin)
	code = Run(context.Background(), append([]string{"explain"}, args...), io)
	return code, out.String(), errOut.String()
}

func TestExplainText(t *testing.T) {
	t.Parallel()
	pidClash := explainSample("criu-4.2.1-restore-pid-clash.log")
	code, out, errOut := runExplain(t, "", pidClash)
	if code != exit.OK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	want := `1. pid-conflict: criu-fork-pid-exists  (most likely root cause)
   ` + pidClash + `:83: (00.062949) Error (criu/cr-restore.c:1237): Can't fork for 27407: File exists
   cause: A process with the PID recorded in the images already exists on the restoring host; CRIU restores every task with its original PID.
   fix:   Restore the workload in its own PID namespace (a container), or end the process holding that PID; right after a dump wait until the old tree is reaped.
   see:   https://github.com/checkpoint-restore/criu/issues/2692
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if errOut != "" {
		t.Errorf("stderr: %q", errOut)
	}
}

func TestExplainSeveralFilesAndStdin(t *testing.T) {
	t.Parallel()
	cli := "Error: Failed taking stateful checkpoint: Failed to run: /usr/libexec/incus/incusd forkmigrate c1 /var/lib/incus/containers /run/incus/c1/lxc.conf /var/lib/incus/containers/c1/state false: exit status 1\n"
	code, out, errOut := runExplain(t, cli, "-", explainSample("incus-stateful-restore-console-failure.lxc.log"),
		explainSample("criu-3.17-dump-vdso-failure.log"), "--output", "json")
	if code != exit.OK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	var got struct {
		Matches []struct {
			ID     string `json:"id"`
			File   string `json:"file"`
			LineNo int    `json:"line_no"`
		} `json:"matches"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	var ids []string
	for _, m := range got.Matches {
		ids = append(ids, m.ID+"@"+filepath.Base(m.File))
	}
	want := []string{
		"lxc-console-path-mismatch@incus-stateful-restore-console-failure.lxc.log",
		"criu-vdso-rt-area-bounds@criu-3.17-dump-vdso-failure.log",
		"criu-vdso-symtable@criu-3.17-dump-vdso-failure.log",
	}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}

	// Standard input alone: the wrapper line names no cause.
	code, out, _ = runExplain(t, cli, "-", "-o", "json")
	if code != exit.OK || out != "{\n  \"matches\": []\n}\n" {
		t.Errorf("wrapper only: exit %d, output %q", code, out)
	}
	code, out, _ = runExplain(t, "(00.1) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n", "-", "-o", "json")
	if code != exit.OK || !strings.Contains(out, `"file": "stdin"`) || !strings.Contains(out, `"line_no": 1`) {
		t.Errorf("stdin: exit %d, output %s", code, out)
	}
}

// TestExplainJSONFields locks the JSON field set of a match.
func TestExplainJSONFields(t *testing.T) {
	t.Parallel()
	code, out, errOut := runExplain(t, "", explainSample("criu-3.17-dump-vdso-failure.log"), "--output", "json")
	if code != exit.OK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	var got map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got["matches"]) != 2 {
		t.Fatalf("want {\"matches\": [2 matches]}, got %s", out)
	}
	base := []string{"category", "cause", "file", "fix", "id", "line", "line_no", "url"}
	for _, m := range got["matches"] {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := base
		if _, ok := m["conditions"]; ok {
			want = []string{"category", "cause", "conditions", "file", "fix", "id", "line", "line_no", "url"}
		}
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("fields of %v (-want +got):\n%s", m["id"], diff)
		}
	}
	if _, ok := got["matches"][0]["conditions"]; !ok {
		t.Errorf("the vDSO signature's version conditions are missing: %s", out)
	}
}

func TestExplainNothing(t *testing.T) {
	t.Parallel()
	code, out, errOut := runExplain(t, "", explainSample("criu-4.2.1-process-dump-ok.log"), "-o", "json")
	if code != exit.OK || out != "{\n  \"matches\": []\n}\n" || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runExplain(t, "Looks good.\n", "-")
	if code != exit.OK || out != "No known failure signature matched.\n" {
		t.Errorf("text: exit %d, stdout %q", code, out)
	}
}

func TestExplainErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.log")}, exit.Failure,
			[]string{"read " + filepath.Join(dir, "nope.log"), "no such file or directory", "hint: check the path"}},
		{"directory", []string{dir}, exit.Failure, []string{"read " + dir, "hint: check the path"}},
		{"missing among good files", []string{explainSample("criu-4.2.1-restore-pid-clash.log"), filepath.Join(dir, "x")}, exit.Failure,
			[]string{"no such file or directory"}},
		{"no arguments", nil, exit.Usage, []string{"no logs given", "hint: "}},
		{"stdin twice", []string{"-", "-"}, exit.Usage, []string{"standard input (-) given 2 times"}},
		{"bad output", []string{"-", "--output", "xml"}, exit.Usage, []string{`unknown output format "xml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runExplain(t, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty on error: %q", out)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}
