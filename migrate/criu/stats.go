package criu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"

	"github.com/ferry-migrate/ferry/migrate"
)

// readStats decodes a stats-dump or stats-restore image. Unlike go-criu's
// reader it checks lengths, so a truncated file is an error, not a panic.
func readStats(path string) (*stats.StatsEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < stats.PayloadOffset {
		return nil, fmt.Errorf("%s: truncated (%d bytes)", path, len(b))
	}
	if binary.LittleEndian.Uint32(b[stats.PrimaryMagicOffset:]) != stats.ImgServiceMagic ||
		binary.LittleEndian.Uint32(b[stats.SecondaryMagicOffset:]) != stats.StatsMagic {
		return nil, fmt.Errorf("%s: not a CRIU stats image", path)
	}
	n := int(binary.LittleEndian.Uint32(b[stats.SizeOffset:]))
	if n > len(b)-stats.PayloadOffset {
		return nil, fmt.Errorf("%s: truncated payload (%d of %d bytes)", path, len(b)-stats.PayloadOffset, n)
	}
	st := &stats.StatsEntry{}
	if err := st.UnmarshalVT(b[stats.PayloadOffset : stats.PayloadOffset+n]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

func us(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

// DumpStats fills s from DIR/stats-dump; a missing file leaves s alone.
func DumpStats(dir string, s *migrate.Stats) error {
	st, err := readStats(filepath.Join(dir, stats.StatsDump))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	d := st.GetDump()
	s.FreezingTime = us(d.GetFreezingTime())
	s.FrozenTime = us(d.GetFrozenTime())
	s.MemdumpTime = us(d.GetMemdumpTime())
	s.MemwriteTime = us(d.GetMemwriteTime())
	s.PagesScanned = d.GetPagesScanned()
	s.PagesWritten = d.GetPagesWritten()
	return nil
}

// RestoreStats fills s from DIR/stats-restore; a missing file leaves s alone.
func RestoreStats(dir string, s *migrate.Stats) error {
	st, err := readStats(filepath.Join(dir, stats.StatsRestore))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	r := st.GetRestore()
	s.RestoreTime = us(r.GetRestoreTime())
	s.ForkingTime = us(r.GetForkingTime())
	s.PagesRestored = r.GetPagesRestored()
	return nil
}

// ImageBytes is the size of the images in dir.
func ImageBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
