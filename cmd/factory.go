package cmd

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
	"github.com/ferry-migrate/ferry/report/explain"
)

// IOStreams are the streams a command talks to. Tests use in-memory ones and
// read exactly what a user would see.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer // data
	ErrOut io.Writer // progress, warnings, errors
	// ErrTTY is true when ErrOut is a terminal: progress bars and colour
	// only then.
	ErrTTY bool
}

// SystemIO is the process's own streams.
func SystemIO() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		ErrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Factory carries what every command needs: streams, global flags and the
// ways to reach hosts. Commands take what they use from it into their own
// options struct, so tests can replace any of it.
type Factory struct {
	IO *IOStreams
	// Getenv reads the environment ($FERRY_CRIU, ...).
	Getenv func(string) string
	// Host resolves a host spec.
	Host func(spec string) (host.Host, error)
	// Lift picks the lines of a CRIU log that explain a failure.
	Lift func(log string) []string
	// Now is the clock.
	Now func() time.Time

	// Global flag values, valid once the root command parsed its flags.
	outputFlag string
	logLevel   string
	criuFlag   string

	Output output.Format
	Log    *slog.Logger
}

// NewFactory returns the production factory.
func NewFactory(streams *IOStreams) *Factory {
	return &Factory{
		IO:     streams,
		Getenv: os.Getenv,
		Host:   resolveHost,
		Now:    time.Now,
		Lift:   explain.Lift,
		Log:    slog.New(slog.DiscardHandler),
	}
}

func resolveHost(spec string) (host.Host, error) {
	h, err := host.New(spec)
	if err != nil {
		return nil, exit.New(exit.Usage, err)
	}
	return h, nil
}

// CRIUPath is the CRIU binary named by --criu, then $FERRY_CRIU; empty means
// "look for it".
func (f *Factory) CRIUPath() string {
	if f.criuFlag != "" {
		return f.criuFlag
	}
	return f.Getenv(criubin.EnvVar)
}

// setup validates the global flags; it runs before every command.
func (f *Factory) setup() error {
	format, err := output.ParseFormat(f.outputFlag)
	if err != nil {
		return exit.New(exit.Usage, err, "use --output text, json or yaml")
	}
	f.Output = format
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(f.logLevel))); err != nil {
		return exit.Usagef("use --log-level debug, info, warn or error", "unknown log level %q", f.logLevel)
	}
	f.Log = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: level}))
	return nil
}
