package criu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"google.golang.org/protobuf/proto"
)

const (
	magicCommon = 0x54564319
	magicFiles  = 0x56303138
)

// FixExpiredTimerfds works around a CRIU defect (seen with 4.2.1): a
// periodic timerfd dumped after it expired and before its owner read it
// (the kernel re-arms a periodic timerfd only on read, so its it_value is
// 0 and its ticks 1 or more) is restored with it_value 0, which disarms
// it: the pending ticks are delivered once and the timer never fires
// again. This sets such a timer's it_value to its interval in the images in
// dir (files.img) before the restore, so it fires again one period later.
// It returns one line per timer it fixed; an image set without timerfds is
// left untouched.
func FixExpiredTimerfds(dir string) ([]string, error) {
	path := filepath.Join(dir, "files.img")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) < 8 || binary.LittleEndian.Uint32(b) != magicCommon || binary.LittleEndian.Uint32(b[4:]) != magicFiles {
		return nil, fmt.Errorf("%s: not a CRIU files image", path)
	}
	out := append([]byte(nil), b[:8]...)
	var fixed []string
	for off := 8; off < len(b); {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("%s: truncated entry header at byte %d", path, off)
		}
		size := int(binary.LittleEndian.Uint32(b[off:]))
		if size > len(b)-off-4 {
			return nil, fmt.Errorf("%s: entry at byte %d claims %d bytes, %d left", path, off, size, len(b)-off-4)
		}
		raw := b[off+4 : off+4+size]
		off += 4 + size
		var e fdinfo.FileEntry
		if err := proto.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: entry at byte %d: %w", path, off, err)
		}
		t := e.GetTfd()
		if e.GetType() != fdinfo.FdTypes_TIMERFD || t == nil || t.GetVsec() != 0 || t.GetVnsec() != 0 ||
			(t.GetIsec() == 0 && t.GetInsec() == 0) || t.GetTicks() == 0 {
			out = binary.LittleEndian.AppendUint32(out, uint32(size))
			out = append(out, raw...)
			continue
		}
		isec, insec := t.GetIsec(), t.GetInsec()
		t.Vsec, t.Vnsec = &isec, &insec
		nb, err := proto.Marshal(&e)
		if err != nil {
			return nil, err
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(nb)))
		out = append(out, nb...)
		fixed = append(fixed, fmt.Sprintf("timerfd %#x: dumped expired with %d tick(s) unread; re-armed with its interval %s (CRIU would restore it disarmed)",
			t.GetId(), t.GetTicks(), time.Duration(isec)*time.Second+time.Duration(insec)))
	}
	if len(fixed) == 0 {
		return nil, nil
	}
	tmp := path + ".ferry-tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return nil, err
	}
	return fixed, os.Rename(tmp, path)
}
