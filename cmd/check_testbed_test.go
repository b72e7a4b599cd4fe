package cmd

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/testenv"
	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/testbed"
)

// TestCheckTestbed probes and compares real testbed hosts (network
// namespaces made by `ferry testbed up`) through the CLI.
func TestCheckTestbed(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "nsenter", "nft")
	testenv.CRIU(t)
	exe := testenv.FerryBinary(t)
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err == nil && fs.Flags&unix.ST_NODEV != 0 {
		var err error
		if dir, err = os.MkdirTemp("/var/tmp", "ferry-testbed-check-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	prefix := fmt.Sprintf("p%d", os.Getpid()%10000)
	t.Setenv(testbed.DirEnv, dir)
	t.Setenv(testbed.PrefixEnv, prefix)
	t.Setenv(testbed.ExeEnv, exe)
	if code, _, errOut := runWith(t, nil, "testbed", "up", "--hosts", "2"); code != 0 {
		t.Fatalf("testbed up: exit %d: %s", code, errOut)
	}
	t.Cleanup(func() {
		if code, _, errOut := runWith(t, nil, "testbed", "down"); code != 0 {
			t.Errorf("testbed down: exit %d: %s", code, errOut)
		}
	})
	h1, h2 := "testbed:"+prefix+"1", "testbed:"+prefix+"2"

	code, out, errOut := runWith(t, nil, "probe", h1, "-o", "json")
	if code != 0 {
		t.Fatalf("probe %s: exit %d: %s", h1, code, errOut)
	}
	f, err := probe.Read(strings.NewReader(out), h1)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{probe.KeyCPU, probe.KeyCRIU, probe.KeyCRIUCheck, probe.KeyCRIUFeatures, probe.KeyXSave} {
		if !f.Known(key) {
			t.Errorf("%s unknown on %s: %s", key, h1, f.Why(key))
		}
	}
	if f.Host != h1 || f.CRIU.Check.Verdict != "good" {
		t.Errorf("host %s, criu check %s", f.Host, f.CRIU.Check)
	}

	code, out, errOut = runWith(t, nil, "check", h1, h2)
	if code != exit.OK || !strings.HasPrefix(out, h1+" -> "+h2+" (criu): compatible") {
		t.Errorf("check %s %s: exit %d\n%s\n%s", h1, h2, code, out, errOut)
	}
	code, out, errOut = runWith(t, nil, "check", "--matrix", "local", h1, h2)
	if code != exit.OK || strings.Count(out, "  compatible") != 6 {
		t.Errorf("matrix: exit %d\n%s\n%s", code, out, errOut)
	}
}
