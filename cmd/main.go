// Package cmd is ferry's command-line interface: it parses flags into option
// structs, calls the packages that do the work and renders their results.
// It is the only package that knows about exit codes and os.Stdout.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ferry-migrate/ferry/internal/exit"
)

// Main runs ferry with the process's arguments and streams and returns the
// exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, os.Args[1:], SystemIO())
}

// Run runs one ferry invocation. Errors are printed here, once, followed by
// their hints; nothing below prints an error it also returns.
func Run(ctx context.Context, args []string, streams *IOStreams) int {
	f := NewFactory(streams)
	root := NewRootCmd(f)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exit.OK
	}
	err = classify(err)
	printError(streams.ErrOut, err)
	return exit.CodeOf(err)
}

// classify turns cobra's own argument errors into usage errors.
func classify(err error) error {
	var e *exit.Error
	if errors.As(err, &e) {
		return err
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return exit.New(exit.Usage, err, "run 'ferry --help' for the commands and their flags")
		}
	}
	return err
}

func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "ferry: %v\n", err)
	for _, h := range exit.HintsOf(err) {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
}
