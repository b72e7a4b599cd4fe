package collect

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/report/bundle"
)

var fixedNow = func() time.Time { return time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) }

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Secrets planted in every kind of place a bundle reads.
var planted = []string{
	"s3cret-env-1111",      // environment.* in the container config
	"s3cret-cloud-2222",    // cloud-init user data
	"s3cret-trust-3333",    // the server's trust password
	"s3cretbearer4444abc",  // a bearer token in a log
	"AKIAABCDEFGHIJKLMNOP", // an AWS key in a log
	"s3cret-lxcenv-5555",   // lxc.environment in lxc.conf
	"c3NoLXJzYS1zM2NyZXQ",  // a private key body in a file
	"s3cret-dmesg-7777",    // token=... in dmesg
	"eyJjbGllbnRfbmFtZSI6InMzY3JldC10cnVzdC10b2tlbiJ9", // an LXD trust token
	"MIIB9zCCAX2gAwIBAgIQeKAVXq4g",                     // the server certificate of the real lxc info
	"TdcGwQK0jQTzgLzXot096VI5NAn7nB",                   // its last line
	"hunter2pass",                                      // a URL credential
}

// lxdHost is a host with LXD, a container c1 and planted secrets.
func lxdHost(t *testing.T, name string, dmesg fakeCmd) *fakeHost {
	config := readTestdata(t, "lxc-config-show-expanded-c1.txt")
	config = strings.Replace(config, "config:\n", "config:\n  environment.DB_PASSWORD: s3cret-env-1111\n  environment.MIRROR: https://admin:hunter2pass@mirror.example.com/\n"+
		"  cloud-init.user-data: |\n    #cloud-config\n    chpasswd:\n      list: |\n        root:s3cret-cloud-2222\n    runcmd:\n    - echo hi\n  user.note: keep me\n", 1)
	info := strings.Replace(readTestdata(t, "lxc-info.txt"), "config: {}", "config:\n  core.trust_password: s3cret-trust-3333\n  core.https_address: 10.20.30.40:8443", 1)
	showLog := readTestdata(t, "lxc-info-c1-show-log.txt") +
		"lxc c1 20261129 WARN Authorization: Bearer s3cretbearer4444abcdef from 10.20.30.40 mac 00:16:3e:aa:bb:cc\n"
	return newFakeHost(t, name, map[string]string{
		"/proc/self/mountinfo":                      "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n",
		"/etc/os-release":                           "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
		"/proc/sys/kernel/hostname":                 "db-primary-01\n",
		"/var/log/lxd/lxd.log":                      "t=2026 lvl=info msg=\"started\" host=db-primary-01 addr=10.20.30.40 token=eyJjbGllbnRfbmFtZSI6InMzY3JldC10cnVzdC10b2tlbiJ9\n",
		"/var/log/lxd/c1/lxc.log":                   readTestdata(t, "stateful-restore-console-failure.lxc.log") + "aws key AKIAABCDEFGHIJKLMNOP used\n",
		"/var/log/lxd/c1/lxc.conf":                  "lxc.uts.name = c1\nlxc.environment = API_TOKEN=s3cret-lxcenv-5555\nlxc.net.0.hwaddr = 00:16:3e:aa:bb:cc\n",
		"/var/lib/lxd/containers/c1/state/dump.log": "(00.1) Dumping finished successfully token=s3cret-dmesg-7777\n",
		"/var/log/lxd/c1/deploy.key":                "-----BEGIN OPENSSH PRIVATE KEY-----\nc3NoLXJzYS1zM2NyZXQ\n-----END OPENSSH PRIVATE KEY-----\n",
	}, map[string]fakeCmd{
		"uname -a":                      {out: "Linux db-primary-01 6.18.44 #1 SMP x86_64 GNU/Linux\n"},
		"dmesg":                         dmesg,
		"criu --version":                {out: "Version: 4.2.1\n"},
		"criu check --all":              {out: "Looks good.\n"},
		"lxc info":                      {out: info},
		"incus info":                    {absent: true},
		"lxc info c1 --show-log":        {out: showLog},
		"lxc config show --expanded c1": {out: config},
		"lxc exec c1 -- cat /proc/self/mountinfo":                                                      {out: readTestdata(t, "mountinfo-inside-c1.txt")},
		"find -H /var/log/lxd/c1 -xdev -type f -print0":                                                {out: "/var/log/lxd/c1/lxc.log\x00/var/log/lxd/c1/lxc.conf\x00/var/log/lxd/c1/deploy.key\x00"},
		"find -H /var/snap/lxd/common/lxd/logs/c1 -xdev -type f -print0":                               {exit: 1, out: "find: '/var/snap/lxd/common/lxd/logs/c1': No such file or directory\n"},
		"find -H /var/lib/lxd/containers/c1/state -xdev -type f -name '*.log' -print0":                 {out: "/var/lib/lxd/containers/c1/state/dump.log\x00"},
		"find -H /var/lib/lxd/containers-snapshots/c1 -xdev -type f -name '*.log' -print0":             {out: ""},
		"find -H /var/snap/lxd/common/lxd/containers/c1/state -xdev -type f -name '*.log' -print0":     {exit: 1, out: "find: '/var/snap/lxd/common/lxd/containers/c1/state': No such file or directory\n"},
		"find -H /var/snap/lxd/common/lxd/containers-snapshots/c1 -xdev -type f -name '*.log' -print0": {exit: 1, out: "find: '/var/snap/lxd/common/lxd/containers-snapshots/c1': No such file or directory\n"},
	})
}

// unpacked reads every file of a bundle through Unpack, and the whole
// decompressed archive stream.
func unpacked(t *testing.T, path string) (map[string][]byte, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "x")
	if err := bundle.Unpack(context.Background(), path, dir); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var zr io.Reader
	if strings.HasSuffix(path, ".zst") {
		zr, err = zstd.NewReader(f)
	} else {
		zr, err = gzip.NewReader(f)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return files, raw
}

func TestCollectRedactsEverything(t *testing.T) {
	t.Parallel()
	for _, network := range []bool{false, true} {
		t.Run(map[bool]string{false: "secrets", true: "secrets+network"}[network], func(t *testing.T) {
			t.Parallel()
			src := lxdHost(t, "ssh://root@db-primary-01", fakeCmd{out: "[  1.0] eth0: token=s3cret-dmesg-7777 up\n"})
			c, _ := ParseContainer("lxd:c1")
			// The network case also writes zstd: both streams are searched.
			comp := map[bool]string{false: bundle.Gzip, true: bundle.Zstd}[network]
			out := filepath.Join(t.TempDir(), "b"+bundle.Ext(comp))
			res, err := Collect(context.Background(), Request{
				Hosts: []Target{{Host: src, Role: RoleSource}}, Container: &c, Output: out,
				Options: Options{Now: fixedNow, RedactNetwork: network, Compression: comp},
			})
			if err != nil {
				t.Fatal(err)
			}
			files, raw := unpacked(t, res.Bundle.Path)
			for _, s := range planted {
				if bytes.Contains(raw, []byte(s)) {
					t.Errorf("secret %q is in the archive stream", s)
				}
				for name, b := range files {
					if bytes.Contains(b, []byte(s)) {
						t.Errorf("secret %q is in %s", s, name)
					}
				}
			}
			hostDir := res.Manifest.Hosts[0].Dir
			// What is not secret stays.
			config := string(files[hostDir+"/container-config/config-show-expanded.yaml"])
			for _, keep := range []string{"user.note: keep me", "image.os: busybox", "environment.DB_PASSWORD: [REDACTED]", "volatile.uuid: 9f5f5c4a"} {
				if !strings.Contains(config, keep) {
					t.Errorf("config lost %q:\n%s", keep, config)
				}
			}
			if info := string(files[hostDir+"/lxd-info/lxd-info.txt"]); !strings.Contains(info, "driver_version: 5.0.2") || !strings.Contains(info, "server_version: 5.0.2") {
				t.Errorf("lxc info lost its versions")
			}
			if network {
				for _, leak := range []string{"10.20.30.40", "00:16:3e:aa:bb:cc", "db-primary-01"} {
					if bytes.Contains(raw, []byte(leak)) {
						t.Errorf("network detail %q is in the archive", leak)
					}
				}
				if hostDir != "ssh-root@_hostname-1_" {
					t.Errorf("host directory %q", hostDir)
				}
				// The same address gets the same placeholder in every file.
				a := string(files[hostDir+"/lxd-log/var-log-lxd-lxd.log"])
				b := string(files[hostDir+"/container-info/info-show-log.txt"])
				if !strings.Contains(a, "[ipv4-1]") || !strings.Contains(b, "[ipv4-1]") || !strings.Contains(b, "[mac-1]") {
					t.Errorf("placeholders not stable:\n%s\n%s", a, b)
				}
			}
			// The manifest counts, never shows.
			m := res.Manifest
			counts := map[string]int{}
			for _, a := range m.Artefacts {
				counts[a.Path] = a.Redactions
			}
			for _, p := range []string{"/container-config/config-show-expanded.yaml", "/lxd-info/lxd-info.txt", "/container-logs/var-log-lxd-c1/deploy.key", "/container-logs/var-log-lxd-c1/lxc.conf", "/dmesg/dmesg.txt"} {
				if counts[hostDir+p] == 0 {
					t.Errorf("%s: no redactions counted (%v)", p, counts)
				}
			}
			if bytes.Contains(files["manifest.json"], []byte("s3cret")) {
				t.Error("manifest holds a secret")
			}
		})
	}
}

func TestCollectStatuses(t *testing.T) {
	t.Parallel()
	src := lxdHost(t, "testbed:src", fakeCmd{hang: true})
	c, _ := ParseContainer("lxd:c1")
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	res, err := Collect(context.Background(), Request{
		Hosts: []Target{{Host: src, Role: RoleSource}}, Container: &c, Output: out,
		Options: Options{Now: fixedNow, Timeout: 200 * time.Millisecond},
	})
	var pe *PartialError
	if !errors.As(err, &pe) || res == nil {
		t.Fatalf("err = %v, want a PartialError with a bundle", err)
	}
	if len(pe.Failures) != 1 || !strings.Contains(pe.Failures[0], "dmesg") || !strings.Contains(pe.Failures[0], "timeout") {
		t.Errorf("failures = %q", pe.Failures)
	}
	got := map[string]string{}
	for _, a := range res.Manifest.Artefacts {
		got[strings.TrimPrefix(a.Path, "testbed-src/")] = a.Status
	}
	want := map[string]string{
		"uname/uname.txt":                                               bundle.StatusOK,
		"dmesg/dmesg.txt":                                               bundle.StatusFailed,
		"incus-info/incus-info.txt":                                     bundle.StatusAbsent,
		"lxd-bridge/etc-default-lxd-bridge":                             bundle.StatusAbsent,
		"incus-log/var-log-incus-incusd.log":                            bundle.StatusAbsent,
		"container-logs/var-log-lxd-c1/lxc.log":                         bundle.StatusOK,
		"container-logs/var-snap-lxd-common-lxd-logs-c1":                bundle.StatusAbsent,
		"container-state-logs/var-lib-lxd-containers-c1-state/dump.log": bundle.StatusOK,
		"container-state-logs/var-lib-lxd-containers-snapshots-c1":      bundle.StatusAbsent,
		"mountinfo/proc-self-mountinfo":                                 bundle.StatusOK,
	}
	for p, st := range want {
		if got[p] != st {
			t.Errorf("%s: status %q, want %q", p, got[p], st)
		}
	}
	// The bundle on disk is the one described, with its .sha256.
	b, err := bundle.Open(context.Background(), res.Bundle.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); err != nil {
		t.Error(err)
	}
	if diff := cmp.Diff(res.Manifest, b.Manifest); diff != "" {
		t.Errorf("manifest on disk differs (-returned +disk):\n%s", diff)
	}
	sum, err := os.ReadFile(res.Bundle.Path + ".sha256")
	if err != nil || !strings.HasPrefix(string(sum), res.Bundle.SHA256+"  b.tar.gz") {
		t.Errorf(".sha256 = %q, %v", sum, err)
	}
	if st, err := os.Stat(res.Bundle.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("bundle mode: %v %v", st.Mode(), err)
	}
}

func TestParseContainer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    Container
		wantErr string
	}{
		{"lxd:c1", Container{Runtime: LXD, Name: "c1"}, ""},
		{"incus:web.v2", Container{Runtime: Incus, Name: "web.v2"}, ""},
		{"lxd:remote1:c1", Container{Runtime: LXD, Remote: "remote1", Name: "c1"}, ""},
		{"lxd:../etc", Container{}, "slash"},
		{"lxd:..", Container{}, `".."`},
		{"lxd:a..b", Container{}, `".."`},
		{"lxd:a/b", Container{}, "slash"},
		{"incus:c1\n", Container{}, "control character"},
		{"incus:c\x1b[31m", Container{}, "control character"},
		{"lxd:-rf", Container{}, "starts with"},
		{"lxd:", Container{}, "empty name"},
		{"lxd:r:", Container{}, "empty name"},
		{"docker:c1", Container{}, "lxd: or incus:"},
		{"lxd:c 1", Container{}, `contains ' '`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseContainer(tt.spec)
			if tt.wantErr != "" {
				var ne *NameError
				if !errors.As(err, &ne) || !strings.Contains(err.Error(), tt.wantErr) || ne.Hint() == "" {
					t.Fatalf("err = %v, want NameError with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTimeoutCutsCommand(t *testing.T) {
	t.Parallel()
	jb := job{target: Target{Host: host.Local{}}, c: Command{ID: "hang", Argv: []string{"sh", "-c", "echo started; exec sleep 60"}}}
	outs := runCollector(context.Background(), jb, Options{Timeout: 300 * time.Millisecond, MaxSize: 1 << 20})
	var ce *host.CommandError
	if len(outs) != 1 || !errors.As(outs[0].Err, &ce) || !ce.TimedOut || outs[0].NonZero || outs[0].Absent {
		t.Fatalf("outs = %+v", outs)
	}
	if string(outs[0].Data) != "started\n" {
		t.Errorf("output before the cut: %q", outs[0].Data)
	}
	// A read that blocks (a fifo with no writer) is cut too.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip(err)
	}
	// Release the blocked open afterwards.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	outs = runCollector(context.Background(), job{target: Target{Host: host.Local{}}, c: File{ID: "f", Path: fifo}}, Options{Timeout: 300 * time.Millisecond, MaxSize: 1 << 20})
	if len(outs) != 1 || !errors.Is(outs[0].Err, context.DeadlineExceeded) {
		t.Errorf("fifo read: %+v", outs)
	}
}

func TestSizeCapKeepsTail(t *testing.T) {
	t.Parallel()
	const max = 1 << 20
	// A 1 GiB sparse log ending in a known line: the seekable path.
	p := filepath.Join(t.TempDir(), "big.log")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 30
	last := "the last line\n"
	if _, err := f.WriteAt([]byte(last), size-int64(len(last))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	outs := File{ID: "big", Path: p}.Collect(context.Background(), host.Local{}, Limits{MaxSize: max})
	o := outs[0]
	if o.Err != nil || !o.Truncated || len(o.Data) != max || !strings.HasSuffix(string(o.Data), last) || o.OriginalSize != size {
		t.Errorf("sparse file: err=%v truncated=%v len=%d orig=%d tail=%q", o.Err, o.Truncated, len(o.Data), o.OriginalSize, o.Data[len(o.Data)-20:])
	}
	// A generator: the streaming path, through a command.
	outs = Command{ID: "seq", Argv: []string{"seq", "1", "2000000"}}.Collect(context.Background(), host.Local{}, Limits{MaxSize: max})
	o = outs[0]
	if o.Err != nil || !o.Truncated || len(o.Data) != max || !strings.HasSuffix(string(o.Data), "\n1999999\n2000000\n") || o.OriginalSize != 14888896 {
		t.Errorf("generator: err=%v truncated=%v len=%d orig=%d", o.Err, o.Truncated, len(o.Data), o.OriginalSize)
	}
	// Under the cap nothing is cut.
	outs = Command{ID: "seq", Argv: []string{"seq", "1", "3"}}.Collect(context.Background(), host.Local{}, Limits{MaxSize: max})
	if o := outs[0]; o.Truncated || string(o.Data) != "1\n2\n3\n" {
		t.Errorf("small output: %+v", o)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		max    int64
		writes []string
		want   string
		trunc  bool
	}{
		{5, []string{"abc"}, "abc", false},
		{5, []string{"abcde"}, "abcde", false},
		{5, []string{"abcdef"}, "bcdef", true},
		{5, []string{"ab", "cd", "ef", "gh"}, "defgh", true},
		{5, []string{"abcdefghijklmnop", "q"}, "mnopq", true},
		{3, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, "ghi", true},
		{0, []string{"abc", "def"}, "abcdef", false},
	}
	for _, tt := range tests {
		tl := newTail(tt.max)
		for _, w := range tt.writes {
			tl.Write([]byte(w))
		}
		got, trunc := tl.Bytes()
		if string(got) != tt.want || trunc != tt.trunc {
			t.Errorf("max %d writes %q: got %q %v, want %q %v", tt.max, tt.writes, got, trunc, tt.want, tt.trunc)
		}
	}
}

// TestCollectTwoHosts: host-level artefacts come from source and target; a
// host given as both is collected once.
func TestCollectTwoHosts(t *testing.T) {
	t.Parallel()
	mk := func(name string) *fakeHost {
		return newFakeHost(t, name, map[string]string{"/proc/self/mountinfo": name + " mounts\n"}, map[string]fakeCmd{
			"uname -a": {out: "Linux " + name + "\n"}, "dmesg": {out: "[0.0] " + name + "\n"},
			"criu --version": {absent: true}, "criu check --all": {absent: true},
			"lxc info": {absent: true}, "incus info": {absent: true},
		})
	}
	src, dst := mk("testbed:a"), mk("testbed:b")
	res, err := Collect(context.Background(), Request{
		Hosts:  []Target{{Host: src, Role: RoleSource}, {Host: dst, Role: RoleTarget}, {Host: src, Role: RoleTarget}},
		Output: filepath.Join(t.TempDir(), "b.tar.gz"), Options: Options{Now: fixedNow},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bundle.Host{{Name: "testbed:a", Role: "source+target", Dir: "testbed-a"}, {Name: "testbed:b", Role: "target", Dir: "testbed-b"}}
	if diff := cmp.Diff(want, res.Manifest.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	b, err := bundle.Open(context.Background(), res.Bundle.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b"} {
		if d, _ := b.File("testbed-" + h + "/uname/uname.txt"); string(d) != "Linux testbed:"+h+"\n" {
			t.Errorf("%s uname: %q", h, d)
		}
	}
}
