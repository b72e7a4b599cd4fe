package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ferry-migrate/ferry/internal/criubin"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/output"
)

// Set by the linker: -X github.com/ferry-migrate/ferry/cmd.version=...
var (
	version = "dev"
	commit  = "unknown"
)

// VersionOptions are the inputs of `ferry version`.
type VersionOptions struct {
	IO       *IOStreams
	Host     host.Host
	CRIUPath string
	Format   output.Format
}

// VersionInfo is the data model of `ferry version`.
type VersionInfo struct {
	Ferry     string   `json:"ferry"`
	Commit    string   `json:"commit"`
	GoVersion string   `json:"go"`
	Platform  string   `json:"platform"`
	CRIU      CRIUInfo `json:"criu"`
}

// CRIUInfo is the CRIU that ferry found, or why it found none.
type CRIUInfo struct {
	Found   bool   `json:"found"`
	Path    string `json:"path"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
}

func (v VersionInfo) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "ferry %s (commit %s)\n", v.Ferry, v.Commit)
	fmt.Fprintf(w, "go    %s %s\n", v.GoVersion, v.Platform)
	if v.CRIU.Found {
		_, err := fmt.Fprintf(w, "criu  %s (%s)\n", v.CRIU.Version, v.CRIU.Path)
		return err
	}
	_, err := fmt.Fprintf(w, "criu  not found: %s\n", v.CRIU.Error)
	return err
}

func newVersionCmd(f *Factory, runF func(context.Context, *VersionOptions) error) *cobra.Command {
	opts := &VersionOptions{IO: f.IO}
	return &cobra.Command{
		Use:   "version",
		Short: "Show ferry's version and the CRIU it uses",
		Long: `Show ferry's version and commit, the Go toolchain it was built with, and
which CRIU binary it found on this host with its version.

A CRIU named by --criu or $FERRY_CRIU that does not work is an error; no
CRIU at all is reported, not an error.`,
		Example: `  ferry version
  ferry version --output json
  ferry version --criu /opt/ferry/criu/bin/criu`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			opts.Host = host.Local{}
			opts.CRIUPath = f.CRIUPath()
			opts.Format = f.Output
			if runF != nil {
				return runF(c.Context(), opts)
			}
			return versionRun(c.Context(), opts)
		},
	}
}

func versionRun(ctx context.Context, opts *VersionOptions) error {
	info := VersionInfo{
		Ferry:     version,
		Commit:    commit,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	c, err := criubin.Find(ctx, opts.Host, opts.CRIUPath)
	switch {
	case err == nil:
		info.CRIU = CRIUInfo{Found: true, Path: c.Path, Version: c.VersionString}
	case opts.CRIUPath != "":
		return exit.WithHint(fmt.Errorf("criu %s: %w", opts.CRIUPath, err),
			"check the path given with --criu or $"+criubin.EnvVar+", or drop it to search PATH")
	default:
		info.CRIU = CRIUInfo{Path: c.Path, Error: err.Error()}
		var nf *criubin.NotFoundError
		if errors.As(err, &nf) {
			fmt.Fprintf(opts.IO.ErrOut, "hint: %s\n", nf.Hint())
		}
	}
	return output.Write(opts.IO.Out, opts.Format, info)
}
