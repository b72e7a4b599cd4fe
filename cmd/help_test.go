package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/exit"
)

// testIO returns in-memory streams and the buffers behind them.
func testIO() (*IOStreams, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, &out, &errOut
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// TestHelpEveryCommand builds the whole tree and asks every command for
// --help: each must answer, show its usage, examples when it runs something,
// and the exit statuses.
func TestHelpEveryCommand(t *testing.T) {
	t.Parallel()
	var paths [][]string
	walk(NewRootCmd(NewFactory(&IOStreams{})), func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || (c.HasParent() && c.Parent().Name() == "completion") {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		paths = append(paths, path)
		if c.Runnable() && c.Example == "" {
			t.Errorf("%q has no examples", c.CommandPath())
		}
	})
	if len(paths) < 2 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	for _, p := range paths {
		t.Run(strings.Join(append([]string{"ferry"}, p...), " "), func(t *testing.T) {
			t.Parallel()
			io, out, errOut := testIO()
			code := Run(context.Background(), append(p, "--help"), io)
			if code != exit.OK {
				t.Fatalf("exit %d, stderr: %s", code, errOut)
			}
			for _, want := range []string{"Usage:", "EXIT STATUS", "--output"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantErr  []string
	}{
		{[]string{"nosuchcommand"}, exit.Usage, []string{`unknown command "nosuchcommand"`, "hint: "}},
		{[]string{"version", "--nosuchflag"}, exit.Usage, []string{"unknown flag: --nosuchflag", "hint: "}},
		{[]string{"version", "extra"}, exit.Usage, []string{"unknown command", "hint: "}},
		{[]string{"version", "--output", "xml"}, exit.Usage, []string{`unknown output format "xml"`, "hint: use --output text, json or yaml"}},
		{[]string{"version", "--log-level", "loud"}, exit.Usage, []string{`unknown log level "loud"`}},
		{[]string{"version", "--criu", "/nonexistent/criu"}, exit.Failure, []string{"criu /nonexistent/criu", "hint: check the path given with --criu"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			io, _, errOut := testIO()
			if got := Run(context.Background(), tt.args, io); got != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.wantCode, errOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if n := strings.Count(errOut.String(), "ferry: "); n != 1 {
				t.Errorf("error printed %d times:\n%s", n, errOut)
			}
		})
	}
}
