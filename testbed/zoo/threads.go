package zoo

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "threads",
		Summary:  "several OS threads, each counting; all must advance with the same thread ids",
		Category: "static/thread (multi-threaded tasks)",
		run:      runThreads,
	})
}

type worker struct {
	tid     atomic.Int64
	count   atomic.Uint64
	badTid  atomic.Int64
	started chan struct{}
}

func runThreads(ctx context.Context, r *reporter, args []string) error {
	n := 4
	if len(args) > 0 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 {
			return fmt.Errorf("threads: count %q: want a positive number", args[0])
		}
		n = v
	}
	ws := make([]*worker, n)
	for i := range ws {
		w := &worker{started: make(chan struct{})}
		ws[i] = w
		go func() {
			// The goroutine owns its thread for good, so its tid is
			// stable unless something (a bad restore) changes it.
			runtime.LockOSThread()
			w.tid.Store(int64(unix.Gettid()))
			close(w.started)
			for {
				if tid := int64(unix.Gettid()); tid != w.tid.Load() {
					w.badTid.Store(tid)
				}
				w.count.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
		<-w.started
	}
	last := make([]uint64, n)
	stalled := make([]int, n)
	return r.loop(ctx, func() (string, error) {
		for i, w := range ws {
			if bad := w.badTid.Load(); bad != 0 {
				return "", fmt.Errorf("threads: thread %d runs as tid %d, started as %d", i, bad, w.tid.Load())
			}
			c := w.count.Load()
			if c < last[i] {
				return "", fmt.Errorf("threads: thread %d counter went back from %d to %d", i, last[i], c)
			}
			// A thread that did not move for many ticks is stuck; one
			// slow tick (right after a restore) is not.
			if c == last[i] {
				stalled[i]++
			} else {
				stalled[i] = 0
			}
			if stalled[i] >= 10 {
				return "", fmt.Errorf("threads: thread %d (tid %d) stopped counting at %d", i, w.tid.Load(), c)
			}
			last[i] = c
		}
		return fmt.Sprintf("%d threads counting", n), nil
	})
}
