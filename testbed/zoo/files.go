package zoo

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "files",
		Summary:  "open files with offsets, an O_APPEND log and a deleted-but-open file",
		Category: "static/file_shared, static/unlink_fstat00 (files, ghost files)",
		run:      runFiles,
	})
}

const recordSize = 32

func record(i int64) []byte {
	s := fmt.Sprintf("record %020d", i)
	return []byte(s + strings.Repeat(".", recordSize-1-len(s)) + "\n")
}

// runFiles writes numbered records through a file whose offset it tracks,
// appends to a second file opened O_APPEND, and keeps a file it deleted
// open, reading it back each tick.
func runFiles(ctx context.Context, r *reporter, _ []string) error {
	if err := os.MkdirAll("/data", 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile("/data/records", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	app, err := os.OpenFile("/data/append", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	ghost, err := os.OpenFile("/data/ghost", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	content := make([]byte, 256<<10)
	for i := range content {
		content[i] = byte(i*7 + i>>8)
	}
	if _, err := ghost.Write(content); err != nil {
		return err
	}
	// The ghost's own offset is left in the middle, and must stay there.
	const ghostOff = 12345
	if _, err := ghost.Seek(ghostOff, io.SeekStart); err != nil {
		return err
	}
	if err := os.Remove("/data/ghost"); err != nil {
		return err
	}
	sum := crc32.ChecksumIEEE(content)
	var n int64
	return r.loop(ctx, func() (string, error) {
		if _, err := f.Write(record(n)); err != nil {
			return "", fmt.Errorf("files: write record %d: %w", n, err)
		}
		if _, err := app.Write(record(n)); err != nil {
			return "", fmt.Errorf("files: append record %d: %w", n, err)
		}
		n++
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return "", err
		}
		if off != n*recordSize {
			return "", fmt.Errorf("files: /data/records offset is %d, want %d", off, n*recordSize)
		}
		// Read back an earlier record without moving the offset.
		i := (n - 1) / 2
		buf := make([]byte, recordSize)
		if _, err := f.ReadAt(buf, i*recordSize); err != nil {
			return "", fmt.Errorf("files: read record %d: %w", i, err)
		}
		if !bytes.Equal(buf, record(i)) {
			return "", fmt.Errorf("files: record %d reads %q", i, buf)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(app.Fd()), &st); err != nil {
			return "", err
		}
		if st.Size != n*recordSize {
			return "", fmt.Errorf("files: /data/append is %d bytes, want %d", st.Size, n*recordSize)
		}
		if err := unix.Fstat(int(ghost.Fd()), &st); err != nil {
			return "", err
		}
		if st.Nlink != 0 {
			return "", fmt.Errorf("files: deleted file has %d links again", st.Nlink)
		}
		got := make([]byte, len(content))
		if _, err := ghost.ReadAt(got, 0); err != nil {
			return "", fmt.Errorf("files: read deleted file: %w", err)
		}
		if s := crc32.ChecksumIEEE(got); s != sum {
			return "", fmt.Errorf("files: deleted file checksum %#x, want %#x", s, sum)
		}
		if off, err := ghost.Seek(0, io.SeekCurrent); err != nil || off != ghostOff {
			return "", fmt.Errorf("files: deleted file offset %d (%v), want %d", off, err, ghostOff)
		}
		return fmt.Sprintf("%d records at the right offsets; deleted file intact (crc %#x)", n, sum), nil
	})
}
