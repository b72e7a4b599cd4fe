package zoo

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"golang.org/x/sys/unix"
)

func init() {
	register(&Workload{
		Name:     "shm",
		Summary:  "a SysV shared memory segment, attached twice, rewritten and checked each tick",
		Category: "static/shm (SysV IPC)",
		run:      runShm,
	})
}

// runShm writes through one attachment of a private SysV segment and reads
// through another: both must show the same bytes, and the bytes must match
// the checksum kept in the process's own memory.
func runShm(ctx context.Context, r *reporter, _ []string) error {
	const size = 1 << 20
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	w, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat: %w", err)
	}
	rd, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		return fmt.Errorf("shmat read-only: %w", err)
	}
	for i := range w {
		w[i] = byte(i)
	}
	sum := crc32.ChecksumIEEE(w)
	var n uint64
	return r.loop(ctx, func() (string, error) {
		if s := crc32.ChecksumIEEE(rd); s != sum {
			return "", fmt.Errorf("shm: segment %d checksum %#x, want %#x", id, s, sum)
		}
		if got := binary.LittleEndian.Uint64(rd[:8]); n > 0 && got != n {
			return "", fmt.Errorf("shm: segment %d holds counter %d, want %d", id, got, n)
		}
		n++
		binary.LittleEndian.PutUint64(w[:8], n)
		off := 8 + int(n*4099)%(size-16)
		w[off] ^= 0xff
		sum = crc32.ChecksumIEEE(w)
		return fmt.Sprintf("segment %d consistent through both attachments", id), nil
	})
}
