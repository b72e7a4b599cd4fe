// Package remote runs ferry's process-tree moves on plain hosts reached
// over SSH: ferry copies itself to the host (content-addressed, once),
// carries the CRIU images there, and runs CRIU on the far side through
// `ferry agent --stdio`. It provides the migrate.Placement of a pid:N tree
// moved to such a host, and a journaled restore onto one.
package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// DefaultDir is where ferry keeps its own binary (DIR/bin) and the files of
// a run (DIR/remote/RUN) on a remote host.
const DefaultDir = "/var/lib/ferry"

// ExeEnv names the static ferry binary to copy to remote hosts; the
// default is the running executable.
const ExeEnv = "FERRY_EXE"

// Binary is ferry's binary on a host.
type Binary struct {
	// Path is where it lies on the host.
	Path string `json:"path"`
	// Copied is true when this call copied it; false when it was there.
	Copied bool          `json:"copied"`
	Bytes  int64         `json:"bytes"`
	Took   time.Duration `json:"took_ns"`
}

// Note is the binary's state for a step's notes.
func (b *Binary) Note() string {
	if b.Copied {
		return fmt.Sprintf("copied to %s (%d bytes in %s)", b.Path, b.Bytes, b.Took.Round(time.Millisecond))
	}
	return fmt.Sprintf("present at %s (checked in %s)", b.Path, b.Took.Round(time.Millisecond))
}

// AgentArgv is the command that starts ferry's agent from b, running CRIU
// at criuPath ("" lets the agent look for CRIU itself).
func (b *Binary) AgentArgv(criuPath string) []string {
	argv := []string{b.Path, "agent", "--stdio"}
	if criuPath != "" {
		argv = append(argv, "--criu", criuPath)
	}
	return argv
}

// Executable is the ferry binary to copy: $FERRY_EXE, else the running
// executable.
func Executable(getenv func(string) string) (string, error) {
	if e := getenv(ExeEnv); e != "" {
		return e, nil
	}
	return os.Executable()
}

// NotStaticError refuses to copy a dynamically linked ferry: the remote
// host's libraries may not match.
type NotStaticError struct{ Path, Interp string }

func (e *NotStaticError) Error() string {
	return fmt.Sprintf("%s is dynamically linked (interpreter %s): ferry copies itself to remote hosts only as a static binary", e.Path, e.Interp)
}
func (e *NotStaticError) Hint() string {
	return "build ferry with `make build` (CGO_ENABLED=0), or point $" + ExeEnv + " at a static ferry"
}

// checkStatic refuses an executable that needs a dynamic loader.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("ferry binary %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(prog.Open(), 4096))
		return &NotStaticError{Path: p, Interp: strings.TrimRight(string(b), "\x00")}
	}
	return nil
}

func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// remoteSHA256 is the sha256 of path on h ("" when it is absent).
func remoteSHA256(ctx context.Context, h host.Host, p string) (string, error) {
	res, err := h.Run(ctx, []string{"sha256sum", "--", p}, host.RunOptions{Env: []string{"LC_ALL=C"}})
	if err != nil {
		var ce *host.CommandError
		if errors.As(err, &ce) && ce.ExitCode == 1 && strings.Contains(ce.Stderr, "No such file") {
			return "", nil
		}
		return "", err
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) == 0 {
		return "", fmt.Errorf("%s: sha256sum %s printed nothing", h.Name(), p)
	}
	return f[0], nil
}

// EnsureBinary makes sure the static ferry binary local exists on h at a
// content-addressed path under dir (DIR/bin/ferry-<sha256 prefix>) and
// returns it. It copies only when the host lacks it (or holds a damaged
// copy): into a temporary name, checked, then renamed, so that a broken
// copy is never run. The local host uses local as it is.
func EnsureBinary(ctx context.Context, h host.Host, local, dir string) (*Binary, error) {
	start := time.Now()
	if _, ok := h.(host.Local); ok {
		return &Binary{Path: local, Took: time.Since(start)}, nil
	}
	if err := checkStatic(local); err != nil {
		return nil, err
	}
	sum, size, err := fileSHA256(local)
	if err != nil {
		return nil, fmt.Errorf("ferry binary: %w", err)
	}
	b := &Binary{Path: path.Join(dir, "bin", "ferry-"+sum[:16]), Bytes: size}
	got, err := remoteSHA256(ctx, h, b.Path)
	if err != nil {
		return nil, fmt.Errorf("look for ferry on %s: %w", h.Name(), err)
	}
	if got == sum {
		b.Took = time.Since(start)
		return b, nil
	}
	if err := copyBinary(ctx, h, local, b.Path, sum); err != nil {
		return nil, fmt.Errorf("copy ferry to %s: %w", h.Name(), err)
	}
	b.Copied, b.Took = true, time.Since(start)
	return b, nil
}

func copyBinary(ctx context.Context, h host.Host, local, dst, sum string) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := dst + ".tmp-" + hex.EncodeToString(rnd[:])
	if _, err := h.Run(ctx, []string{"mkdir", "-p", "-m", "0755", "--", path.Dir(dst)}, host.RunOptions{}); err != nil {
		return err
	}
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	ok := false
	defer func() {
		if !ok {
			_, _ = h.Run(context.WithoutCancel(ctx), []string{"rm", "-f", "--", tmp}, host.RunOptions{Timeout: 30 * time.Second})
		}
	}()
	if _, err := h.Run(ctx, []string{"dd", "of=" + tmp, "bs=1M", "status=none"}, host.RunOptions{Stdin: f, Timeout: 10 * time.Minute}); err != nil {
		return err
	}
	if _, err := h.Run(ctx, []string{"chmod", "0755", "--", tmp}, host.RunOptions{}); err != nil {
		return err
	}
	got, err := remoteSHA256(ctx, h, tmp)
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("the copy %s has sha256 %s, not %s", tmp, got, sum)
	}
	if _, err := h.Run(ctx, []string{"mv", "-f", "--", tmp, dst}, host.RunOptions{}); err != nil {
		return err
	}
	ok = true
	return nil
}
