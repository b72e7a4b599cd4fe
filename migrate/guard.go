package migrate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
)

// WatchPageServer watches a dump's connection from src to the page server
// ps, as a placement's Guard: when its acknowledged bytes stop moving for
// stall (the link is down: TCP would retry for many minutes while the
// workload stays frozen), it destroys the socket on src (ss -K,
// SOCK_DESTROY). CRIU's write then fails, CRIU fails the dump and resumes
// the tree, and the engine reports the failure. The returned function stops
// the watch and says what it did ("" when nothing). dest names the target
// in that sentence.
func WatchPageServer(ctx context.Context, src host.Host, ps *PageServer, dest string, stall time.Duration) func() string {
	if ps == nil {
		return func() string { return "" }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan string, 1)
	go func() {
		filter := []string{"dst", ps.Address, "dport", "=", strconv.Itoa(ps.Port)}
		var last string
		lastMove := time.Now()
		for {
			select {
			case <-ctx.Done():
				done <- ""
				return
			case <-time.After(250 * time.Millisecond):
			}
			out, err := host.Output(ctx, src, append([]string{"ss", "-tinH"}, filter...)...)
			if err != nil {
				continue
			}
			// A connection still being made (SYN-SENT) has no bytes
			// acknowledged yet: its state is its progress.
			progress := ackedBytes(string(out))
			if f := strings.Fields(string(out)); len(f) > 0 {
				progress = f[0] + " " + progress
			}
			if progress != last {
				last, lastMove = progress, time.Now()
				continue
			}
			if progress != "" && time.Since(lastMove) > stall {
				_, _ = src.Run(ctx, append([]string{"ss", "-K"}, filter...), host.RunOptions{})
				done <- fmt.Sprintf("the memory transfer to %s stalled for %s: its connection was closed", dest, stall)
				return
			}
		}
	}()
	return func() string {
		cancel()
		return <-done
	}
}

// ackedBytes is the bytes_acked figure of `ss -tin` output ("" when no
// connection is listed).
func ackedBytes(ss string) string {
	for _, f := range strings.Fields(ss) {
		if v, ok := strings.CutPrefix(f, "bytes_acked:"); ok {
			return v
		}
	}
	return ""
}
