package probe_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/probe"
	"github.com/ferry-migrate/ferry/probe/probetest"
)

func readTestdata(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(probetest.Host("vm-6.18"), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    probe.Version
		wantErr bool
	}{
		{"6.18.44-fc-v657", probe.Version{6, 18, 44}, false},
		{"5.10.0-28-amd64", probe.Version{5, 10, 0}, false},
		{"v4.2.1", probe.Version{4, 2, 1}, false},
		{"Version: 3.15", probe.Version{3, 15, 0}, false},
		{"podman version 4.3.1", probe.Version{4, 3, 1}, false},
		{"6.6", probe.Version{6, 6, 0}, false},
		{"1.2.3.4", probe.Version{1, 2, 3}, false},
		{"6", probe.Version{}, true},
		{"none", probe.Version{}, true},
	}
	for _, tt := range tests {
		got, err := probe.ParseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if !(probe.Version{4, 1, 9}).Less(probe.Version{4, 2, 0}) || (probe.Version{6, 13, 0}).Less(probe.Version{6, 13, 0}) {
		t.Error("Less is wrong")
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	zr, err := gzip.NewReader(bytes.NewReader(readTestdata(t, "proc/config.gz")))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := probe.ParseConfig(plain)
	want := map[string]string{"CHECKPOINT_RESTORE": "y", "MEM_SOFT_DIRTY": "n", "INET_RAW_DIAG": "n", "USERFAULTFD": "y", "TIME_NS": "y", "NF_TABLES": "y"}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %q, want %q", k, cfg[k], v)
		}
	}
	if len(cfg) != len(probe.ConfigOptions) {
		t.Errorf("%d options, want every one of %d", len(cfg), len(probe.ConfigOptions))
	}
	// An option a config does not name is not set.
	if got := probe.ParseConfig([]byte("CONFIG_TUN=m\n"))["NAMESPACES"]; got != "n" {
		t.Errorf("absent option = %q", got)
	}
	if got := probe.ParseConfig([]byte("CONFIG_TUN=m\n"))["TUN"]; got != "m" {
		t.Errorf("module = %q", got)
	}
}

func TestParseKallsyms(t *testing.T) {
	t.Parallel()
	names, err := probe.ParseKallsyms(readTestdata(t, "proc/kallsyms"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clone3", "openat2", "read", "pidfd_open", "mseal"} {
		if !contains(names, want) {
			t.Errorf("%s missing from %d syscalls", want, len(names))
		}
	}
	for _, bad := range []string{"ni_syscall_x", ""} {
		if contains(names, bad) {
			t.Errorf("%q listed", bad)
		}
	}
	// kptr_restrict: every address is zero; the list would be a guess.
	hidden := "0000000000000000 T __x64_sys_read\n0000000000000000 T __x64_sys_write\n"
	if _, err := probe.ParseKallsyms([]byte(hidden)); err == nil || !strings.Contains(err.Error(), "kptr_restrict") {
		t.Errorf("zero addresses: err = %v", err)
	}
	// Old kernels name entry points sys_*.
	old := "ffffffff81000000 T sys_read\nffffffff81000010 T sys_write\nffffffff81000020 D sys_call_table\n"
	if got, err := probe.ParseKallsyms([]byte(old)); err != nil || !cmp.Equal(got, []string{"read", "write"}) {
		t.Errorf("sys_ entries = %v, %v", got, err)
	}
}

func TestParseCPUInfo(t *testing.T) {
	t.Parallel()
	c, err := probe.ParseCPUInfo(readTestdata(t, "proc/cpuinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Count != 2 || c.Family != 26 || c.Model != 2 || c.ModelName != "AMD EPYC" {
		t.Errorf("got %+v", c)
	}
	for _, f := range []string{"sse4_2", "avx2", "avx512f", "sha_ni", "bmi2"} {
		if !contains(c.InstructionFlags, f) {
			t.Errorf("%s not an instruction flag", f)
		}
	}
	for _, f := range []string{"hypervisor", "ht", "constant_tsc", "tsc_known_freq"} {
		if !contains(c.PlatformFlags, f) {
			t.Errorf("%s not a platform flag", f)
		}
	}
	if !contains(c.OtherInstructionFlags, "avx512ifma") || !contains(c.OtherInstructionFlags, "fma") {
		t.Errorf("other instruction flags = %v", c.OtherInstructionFlags)
	}
	if len(c.InstructionFlags)+len(c.OtherInstructionFlags)+len(c.PlatformFlags) != len(c.Flags) {
		t.Error("classification loses or duplicates flags")
	}
	// Flags are those every processor has.
	two := "processor: 0\nvendor_id: GenuineIntel\nflags: fpu sse avx2\n\nprocessor: 1\nvendor_id: GenuineIntel\nflags: fpu sse\n"
	c, err = probe.ParseCPUInfo([]byte(two))
	if err != nil || !cmp.Equal(c.Flags, []string{"fpu", "sse"}) {
		t.Errorf("common flags = %v, %v", c.Flags, err)
	}
	if _, err := probe.ParseCPUInfo([]byte("garbage")); err == nil {
		t.Error("garbage cpuinfo parsed")
	}
}

func TestDecodeCPUInfoImage(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "cpuinfo.img"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := probe.DecodeCPUInfoImage(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (probe.XSave{FeaturesMask: 0xe5, Size: 2432, SizeMax: 2432}); x != want {
		t.Errorf("got %+v, want %+v", x, want)
	}
	for _, bad := range [][]byte{b[:6], b[:len(b)-10], append([]byte{1, 2, 3, 4}, b[4:]...)} {
		if _, err := probe.DecodeCPUInfoImage(bad); err == nil {
			t.Errorf("decoded a broken image of %d bytes", len(bad))
		}
	}
}

func TestParseCRIUCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text string
		code       int
		want       string
		broken     bool
	}{
		{"good", "Looks good.\n", 0, "good", false},
		{"maybe", "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\nLooks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure.\n", 1, "maybe", false},
		{"bad", "Error (criu/cr-check.c:1234): Kernel doesn't support PTRACE_O_SUSPEND_SECCOMP\nDoes not look good.\n", 1, "bad", false},
		{"breakpoints", "Warn  (criu/kerndat.c:1900): Hardware breakpoints don't seem to work\nLooks good.\n", 0, "good", true},
		{"captured without exit code", "Looks good.\n", -1, "good", false},
	}
	for _, tt := range tests {
		c := probe.ParseCRIUCheck(tt.text, tt.code)
		if c.Verdict != tt.want {
			t.Errorf("%s: verdict %q, want %q", tt.name, c.Verdict, tt.want)
		}
		cr := probe.CRIU{Check: c}
		if broken, _ := cr.HWBreakpointsBroken(); broken != tt.broken {
			t.Errorf("%s: breakpoints broken = %v", tt.name, broken)
		}
	}
	real := string(readTestdata(t, "commands/criu_check_--feature_mem_dirty_track"))
	if got := probe.ParseFeatureOutput("mem_dirty_track", real, 1); got != probe.FeatureUnsupported {
		t.Errorf("mem_dirty_track = %s", got)
	}
	real = string(readTestdata(t, "commands/criu_check_--feature_uffd"))
	if got := probe.ParseFeatureOutput("uffd", real, 0); got != probe.FeatureSupported {
		t.Errorf("uffd = %s", got)
	}
	if got := probe.ParseFeatureOutput("breakpoints", "Error (criu/cr-check.c:1901): Unknown feature breakpoints\n", 1); got != probe.FeatureUnknownName {
		t.Errorf("unknown name = %s", got)
	}
}

func TestParseMountinfo(t *testing.T) {
	t.Parallel()
	m, err := probe.ParseMountinfo(readTestdata(t, "proc/self/mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, x := range m {
		types[x.FSType] = true
	}
	for _, want := range []string{"ext4", "proc", "cgroup", "cgroup2"} {
		if !types[want] {
			t.Errorf("%s not mounted in %v", want, types)
		}
	}
	fsl := probe.ParseFilesystems(readTestdata(t, "proc/filesystems"))
	if !contains(fsl, "btrfs") || !contains(fsl, "proc") {
		t.Errorf("filesystems = %v", fsl)
	}
	if got := probe.BaseFSType("fuse.sshfs"); got != "fuse" {
		t.Errorf("BaseFSType = %s", got)
	}
	if _, err := probe.ParseMountinfo([]byte("nonsense\n")); err == nil {
		t.Error("nonsense parsed")
	}
}

func TestMangleCommand(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/usr/local/sbin/criu check --feature uffd": "criu_check_--feature_uffd",
		"lxc query /1.0": "lxc_query_.1.0",
		"docker version --format {{.Server.Version}}": "docker_version_--format_.Server.Version",
		"getconf PAGESIZE":                            "getconf_PAGESIZE",
	} {
		if got := probe.MangleCommand(strings.Fields(in)); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	f := gatherDir(t, "vm-6.18", "")
	var buf bytes.Buffer
	if err := writeJSON(&buf, f); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	got, err := probe.Read(bytes.NewReader(good), "a.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	tests := []struct {
		name, in, want string
		newer          bool
	}{
		{"empty", "", "empty file", false},
		{"truncated", string(good[:len(good)/2]), "truncated or not JSON", false},
		{"not json", "Linux version 6.18\n", "truncated or not JSON", false},
		{"other schema", `{"schema": "ferry.check/v1"}`, "not a ferry facts file", false},
		{"no schema", `{"host": "x"}`, "not a ferry facts file", false},
		{"newer", strings.Replace(string(good), probe.Schema, "ferry.facts/v2", 1), "newer than this ferry", true},
		{"bad version", `{"schema": "ferry.facts/vX"}`, "bad schema", false},
		{"wrong types", `{"schema": "ferry.facts/v1", "kernel": "6.18"}`, "does not match", false},
	}
	for _, tt := range tests {
		_, err := probe.Read(strings.NewReader(tt.in), tt.name+".json")
		var se *probe.SchemaError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) || se.Hint() == "" {
			t.Errorf("%s: err = %v, want SchemaError with %q and a hint", tt.name, err, tt.want)
			continue
		}
		if errors.Is(err, probe.ErrNewerSchema) != tt.newer {
			t.Errorf("%s: newer = %v", tt.name, !tt.newer)
		}
		if !strings.Contains(err.Error(), tt.name+".json") {
			t.Errorf("%s: error does not name the file: %v", tt.name, err)
		}
	}
}
