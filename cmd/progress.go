package cmd

import (
	"fmt"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/migrate/criu"
)

// stepPrinter reports a run's steps on stderr: one plain line per finished
// step; on a terminal, while a step runs, a live line with the bytes it has
// written so far and their rate, when watch names a directory for it (the
// images a dump writes, the copy a transfer makes).
func stepPrinter(io *IOStreams, watch func(step string) string) func(migrate.Step) {
	var (
		mu   sync.Mutex
		stop func()
	)
	return func(s migrate.Step) {
		mu.Lock()
		defer mu.Unlock()
		if s.Result == migrate.StepRunning {
			if !io.ErrTTY {
				return
			}
			var dir string
			if watch != nil {
				dir = watch(s.Name)
			}
			stop = liveBar(io, s.Name+" on "+s.Host, dir)
			return
		}
		if stop != nil {
			stop()
			stop = nil
		}
		fmt.Fprintf(io.ErrOut, "%-14s %-14s %8.1fms  %s\n", s.Name, s.Host, float64(s.Duration)/float64(time.Millisecond), s.Result)
	}
}

// liveBar draws a spinner with the size of dir (when set) and its rate until
// the returned function is called.
func liveBar(io *IOStreams, what, dir string) func() {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(io.ErrOut),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(dir != ""),
		progressbar.OptionShowCount(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if dir != "" {
					_ = bar.Set64(criu.ImageBytes(dir))
				} else {
					_ = bar.Add64(0)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		_ = bar.Clear()
	}
}
