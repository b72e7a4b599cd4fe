package zoo

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "pipes",
		Summary:  "a pipe and a unix socketpair with numbered messages always in flight",
		Category: "static/pipe00, static/socketpair (pipes and unix sockets)",
		run:      runPipes,
	})
}

// seqChannel is a byte stream carrying numbered 8-byte messages; the
// writer keeps inFlight of them unread in the kernel buffer, so a dump
// always catches queued data.
type seqChannel struct {
	name      string
	w         io.Writer
	r         io.Reader
	next, got uint64
}

const inFlight = 32

func (c *seqChannel) send() error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], c.next)
	if _, err := c.w.Write(b[:]); err != nil {
		return fmt.Errorf("%s: write message %d: %w", c.name, c.next, err)
	}
	c.next++
	return nil
}

func (c *seqChannel) recv() error {
	var b [8]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return fmt.Errorf("%s: read message %d: %w", c.name, c.got, err)
	}
	if v := binary.LittleEndian.Uint64(b[:]); v != c.got {
		return fmt.Errorf("%s: got message %d, want %d", c.name, v, c.got)
	}
	c.got++
	return nil
}

func runPipes(ctx context.Context, r *reporter, _ []string) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	a := os.NewFile(uintptr(fds[0]), "socketpair-a")
	b := os.NewFile(uintptr(fds[1]), "socketpair-b")
	chans := []*seqChannel{
		{name: "pipe", w: pw, r: pr},
		{name: "socketpair a->b", w: a, r: b},
		{name: "socketpair b->a", w: b, r: a},
	}
	for _, c := range chans {
		for range inFlight {
			if err := c.send(); err != nil {
				return err
			}
		}
	}
	return r.loop(ctx, func() (string, error) {
		for _, c := range chans {
			for range 4 {
				if err := c.send(); err != nil {
					return "", err
				}
				if err := c.recv(); err != nil {
					return "", err
				}
			}
		}
		return fmt.Sprintf("pipe and socketpair in order, %d messages each, %d queued", chans[0].got, inFlight), nil
	})
}
