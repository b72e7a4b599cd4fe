package zoo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "fds",
		Summary:  "an eventfd with a pending count, a periodic timerfd and a signalfd with a pending signal",
		Category: "static/eventfs00, static/timerfd, static/signalfd00",
		run:      runFds,
	})
}

// runFds runs on one locked thread (the signal is queued to that thread, so
// that Go's own signal handling on other threads never sees it). Between
// ticks, the eventfd holds the tick's number and a SIGUSR1 waits on the
// thread; each tick reads both and checks them, and the timerfd must have
// expired since the last tick.
func runFds(ctx context.Context, r *reporter, _ []string) error {
	runtime.LockOSThread()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	period := unix.NsecToTimespec(int64(StatusInterval / 4))
	if err := unix.TimerfdSettime(tfd, 0, &unix.ItimerSpec{Interval: period, Value: period}, nil); err != nil {
		return fmt.Errorf("timerfd settime: %w", err)
	}
	var set unix.Sigset_t
	sig := unix.SIGUSR1
	set.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		return fmt.Errorf("block SIGUSR1: %w", err)
	}
	sfd, err := unix.Signalfd(-1, &set, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("signalfd: %w", err)
	}
	pid, tid := os.Getpid(), unix.Gettid()
	var n, expirations uint64
	misses := 0
	buf := make([]byte, 128)
	first := true
	return r.loop(ctx, func() (string, error) {
		if !first {
			// The eventfd holds what the last tick wrote.
			if _, err := unix.Read(efd, buf[:8]); err != nil {
				return "", fmt.Errorf("fds: read eventfd: %w (its pending count is gone)", err)
			}
			if v := binary.LittleEndian.Uint64(buf[:8]); v != n {
				return "", fmt.Errorf("fds: eventfd holds %d, want %d", v, n)
			}
			// The signal sent last tick is pending on this thread.
			m, err := unix.Read(sfd, buf)
			if err != nil {
				return "", fmt.Errorf("fds: read signalfd: %w (the pending SIGUSR1 is gone)", err)
			}
			if m < 4 || binary.LittleEndian.Uint32(buf[:4]) != uint32(sig) {
				return "", fmt.Errorf("fds: signalfd returned %d bytes, signal %d", m, binary.LittleEndian.Uint32(buf[:4]))
			}
			// The timer fires 4 times a tick; right after a restore a
			// tick may come before it (CRIU re-arms it with the time
			// that was left), so only a timer silent for 5 ticks fails.
			m, err = unix.Read(tfd, buf[:8])
			switch {
			case err == nil && m == 8:
				expirations += binary.LittleEndian.Uint64(buf[:8])
				misses = 0
			case errors.Is(err, unix.EAGAIN):
				misses++
				if misses >= 5 {
					return "", fmt.Errorf("fds: timerfd did not expire for %d ticks", misses)
				}
			default:
				return "", fmt.Errorf("fds: read timerfd: %d bytes, %v", m, err)
			}
		}
		first = false
		n++
		binary.LittleEndian.PutUint64(buf[:8], n)
		if _, err := unix.Write(efd, buf[:8]); err != nil {
			return "", fmt.Errorf("fds: write eventfd: %w", err)
		}
		if err := unix.Tgkill(pid, tid, sig); err != nil {
			return "", fmt.Errorf("fds: queue SIGUSR1: %w", err)
		}
		return fmt.Sprintf("eventfd, signalfd and timerfd consistent (%d timer expirations)", expirations), nil
	})
}
