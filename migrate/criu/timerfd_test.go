package criu

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
)

// tfd is a timerfd as CRIU dumps it from /proc/PID/fdinfo.
type tfd struct {
	id                       uint32
	ticks                    uint64
	vsec, vnsec, isec, insec uint64
}

func filesImage(t *testing.T, timers ...tfd) []byte {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, magicCommon)
	b = binary.LittleEndian.AppendUint32(b, magicFiles)
	u := func(v uint32) *uint32 { return &v }
	q := func(v uint64) *uint64 { return &v }
	for _, tm := range timers {
		e := &fdinfo.FileEntry{Type: fdinfo.FdTypes_TIMERFD.Enum(), Id: u(tm.id), Tfd: &timerfd.TimerfdEntry{
			Id: u(tm.id), Flags: u(0o2004000), Fown: &fown.FownEntry{Uid: u(0), Euid: u(0), Signum: u(0), PidType: u(0), Pid: u(0)},
			Clockid: u(1), Ticks: q(tm.ticks), SettimeFlags: u(0), Vsec: q(tm.vsec), Vnsec: q(tm.vnsec), Isec: q(tm.isec), Insec: q(tm.insec),
		}}
		m, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

func readTimers(t *testing.T, b []byte) []tfd {
	t.Helper()
	var out []tfd
	for off := 8; off < len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		var e fdinfo.FileEntry
		if err := proto.Unmarshal(b[off+4:off+4+n], &e); err != nil {
			t.Fatal(err)
		}
		off += 4 + n
		tm := e.GetTfd()
		out = append(out, tfd{tm.GetId(), tm.GetTicks(), tm.GetVsec(), tm.GetVnsec(), tm.GetIsec(), tm.GetInsec()})
	}
	return out
}

func TestFixExpiredTimerfds(t *testing.T) {
	const ms50 = 50_000_000
	tests := []struct {
		name  string
		in    []tfd
		want  []tfd
		fixes int
	}{
		{
			// What the fds zoo workload dumped: expired, one tick unread.
			name:  "expired periodic timer re-armed",
			in:    []tfd{{id: 6, ticks: 1, isec: 0, insec: ms50}},
			want:  []tfd{{id: 6, ticks: 1, vnsec: ms50, insec: ms50}},
			fixes: 1,
		},
		{
			name: "armed, disarmed by its owner, one-shot: untouched",
			in: []tfd{
				{id: 1, ticks: 0, vnsec: 20_000_000, insec: ms50}, // armed
				{id: 2, ticks: 0, isec: 1},                        // settime with it_value 0: disarmed
				{id: 3, ticks: 1},                                 // a one-shot that fired
			},
			want: []tfd{{id: 1, vnsec: 20_000_000, insec: ms50}, {id: 2, isec: 1}, {id: 3, ticks: 1}},
		},
		{
			name:  "only the expired one of two",
			in:    []tfd{{id: 1, ticks: 0, vsec: 2, isec: 5}, {id: 2, ticks: 3, isec: 2, insec: 500}},
			want:  []tfd{{id: 1, vsec: 2, isec: 5}, {id: 2, ticks: 3, vsec: 2, vnsec: 500, isec: 2, insec: 500}},
			fixes: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "files.img")
			orig := filesImage(t, tt.in...)
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			fixes, err := FixExpiredTimerfds(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(fixes) != tt.fixes {
				t.Errorf("fixes %q, want %d", fixes, tt.fixes)
			}
			for _, f := range fixes {
				if !strings.Contains(f, "re-armed with its interval") {
					t.Errorf("fix line %q", f)
				}
			}
			got, _ := os.ReadFile(path)
			if diff := cmp.Diff(tt.want, readTimers(t, got), cmp.AllowUnexported(tfd{})); diff != "" {
				t.Errorf("timers after the fix (-want +got):\n%s", diff)
			}
			if tt.fixes == 0 && !bytes.Equal(orig, got) {
				t.Error("an image without expired timers was rewritten")
			}
		})
	}
}

func TestFixExpiredTimerfdsErrors(t *testing.T) {
	dir := t.TempDir()
	if fixes, err := FixExpiredTimerfds(dir); err != nil || fixes != nil {
		t.Errorf("no files.img: %q, %v", fixes, err)
	}
	good := filesImage(t, tfd{id: 6, ticks: 1, insec: 1})
	for name, b := range map[string][]byte{
		"wrong magic":     append([]byte{1, 2, 3, 4}, good[4:]...),
		"truncated entry": good[:len(good)-3],
		"short header":    good[:10],
	} {
		if err := os.WriteFile(filepath.Join(dir, "files.img"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := FixExpiredTimerfds(dir); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
