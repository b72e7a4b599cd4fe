package collect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/host/hosttest"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// TestCollectOverSSH collects from the local machine as source and a real
// sshd as target: host-level artefacts from both, and a 1 GiB log on the
// remote side capped by tail -c without crossing the connection whole.
func TestCollectOverSSH(t *testing.T) {
	d := hosttest.StartSSHD(t)
	remote := d.Host(t, d.Options)

	big := filepath.Join(t.TempDir(), "big.log")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("last line\n"), 1<<30-10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	start := time.Now()
	res, err := Collect(context.Background(), Request{
		Hosts:   []Target{{Host: host.Local{}, Role: RoleSource}, {Host: remote, Role: RoleTarget}},
		Extra:   []Collector{File{ID: "big", Path: big}},
		Output:  filepath.Join(t.TempDir(), "b.tar.gz"),
		Options: Options{Now: fixedNow, MaxSize: 1 << 20},
	})
	if res == nil {
		t.Fatal(err)
	}
	t.Logf("collected in %s, %d bytes", time.Since(start), res.Bundle.Size)
	b, err := bundle.Open(context.Background(), res.Bundle.Path)
	if err != nil {
		t.Fatal(err)
	}
	dir := res.Manifest.Hosts[1].Dir
	if !strings.HasPrefix(dir, "ssh-") {
		t.Fatalf("target dir %q", dir)
	}
	by := map[string]bundle.Artefact{}
	for _, a := range res.Manifest.Artefacts {
		by[a.Path] = a
	}
	for _, p := range []string{"local/uname/uname.txt", dir + "/uname/uname.txt", dir + "/mountinfo/proc-self-mountinfo", dir + "/os-release/etc-os-release"} {
		if a := by[p]; a.Status != bundle.StatusOK || a.Size == 0 {
			t.Errorf("%s: %+v", p, a)
		}
	}
	if a := by[dir+"/lxd-bridge/etc-default-lxd-bridge"]; a.Status != bundle.StatusAbsent {
		t.Errorf("lxd-bridge over ssh: %+v", a)
	}
	bigName := dir + "/big/" + fileName(big)
	a := by[bigName]
	data, _ := b.File(bigName)
	if a.Status != bundle.StatusOK || !a.Truncated || a.OriginalSize != 1<<30 || len(data) != 1<<20 || !strings.HasSuffix(string(data), "last line\n") {
		t.Errorf("1 GiB log over ssh: %+v (%d bytes)", a, len(data))
	}
}
