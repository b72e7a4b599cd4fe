// Package probe gathers the facts of one host that decide whether a
// container can move to or from it (kernel, CPU, syscalls, CRIU,
// filesystems, cgroups, runtimes), and compares two hosts' facts rule by
// rule.
//
// Facts are read only through a host.Host, so the local machine, an SSH
// host, a testbed network namespace and a captured directory are probed by
// the same code. A fact that cannot be read is recorded in Facts.Unknown with
// the reason; its field keeps the zero value and is never guessed.
package probe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Schema names the facts format. Readers refuse a newer major version.
const Schema = "ferry.facts/v1"

const schemaPrefix = "ferry.facts/v"

// Facts is everything ferry knows about one host.
type Facts struct {
	Schema   string `json:"schema"`
	Host     string `json:"host"`
	Hostname string `json:"hostname"`

	Kernel         Kernel         `json:"kernel"`
	Syscalls       Syscalls       `json:"syscalls"`
	CPU            CPU            `json:"cpu"`
	CRIU           CRIU           `json:"criu"`
	Filesystems    Filesystems    `json:"filesystems"`
	Virtualization Virtualization `json:"virtualization"`
	Cgroups        Cgroups        `json:"cgroups"`
	LSM            LSM            `json:"lsm"`
	NetworkLock    NetworkLock    `json:"network_lock"`
	// Runtimes holds lxd, incus, lxc, podman, runc and docker.
	Runtimes map[string]Runtime `json:"runtimes"`

	// Unknown maps a fact's key (see the Key* constants) to the reason it
	// could not be read. A fact listed here has a meaningless zero value.
	Unknown map[string]string `json:"unknown"`
}

// Keys of Facts.Unknown. Runtimes use "runtime.<name>".
const (
	KeyHostname       = "hostname"
	KeyKernelRelease  = "kernel.release"
	KeyKernelVersion  = "kernel.version"
	KeyKernelArch     = "kernel.arch"
	KeyPageSize       = "kernel.page_size"
	KeyKernelConfig   = "kernel.config"
	KeySyscalls       = "syscalls"
	KeyCPU            = "cpu"
	KeyXSave          = "cpu.xsave"
	KeyCRIU           = "criu"
	KeyCRIUCheck      = "criu.check"
	KeyCRIUFeatures   = "criu.features"
	KeyKerndatCache   = "criu.kerndat_cache"
	KeyFSSupported    = "filesystems.supported"
	KeyFSMounted      = "filesystems.mounted"
	KeyVirtualization = "virtualization"
	KeyCgroups        = "cgroups"
	KeyLSM            = "lsm"
	KeyNetworkLock    = "network_lock"
)

// Known reports whether the fact key was read.
func (f *Facts) Known(key string) bool {
	_, unknown := f.Unknown[key]
	return !unknown
}

// Why returns the reason a fact is unknown ("" when known).
func (f *Facts) Why(key string) string { return f.Unknown[key] }

func (f *Facts) setUnknown(key string, err error) {
	if f.Unknown == nil {
		f.Unknown = map[string]string{}
	}
	f.Unknown[key] = reason(err)
}

// Kernel is the running kernel.
type Kernel struct {
	Release       string  `json:"release"`        // 6.18.44-fc-v657
	VersionString string  `json:"version_string"` // /proc/version
	Version       Version `json:"version"`        // parsed from Release
	Arch          string  `json:"arch"`           // x86_64
	PageSize      int     `json:"page_size"`      // bytes
	// ConfigSource is the file the configuration was read from.
	ConfigSource string `json:"config_source"`
	// Config holds the options that matter for checkpoint/restore: "y",
	// "m", or "n" (not set).
	Config map[string]string `json:"config"`
}

// Version is a dotted release number (kernel or runtime).
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Patch int `json:"patch"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// IsZero reports whether no version was parsed.
func (v Version) IsZero() bool { return v == Version{} }

// ParseVersion reads the leading "X.Y[.Z]" of s ("6.18.44-fc", "v4.2.1",
// "LXD 5.0.2").
func ParseVersion(s string) (Version, error) {
	i := strings.IndexAny(s, "0123456789")
	if i < 0 {
		return Version{}, fmt.Errorf("no version number in %q", s)
	}
	var nums []int
	cur := ""
	for _, r := range s[i:] + " " {
		if r >= '0' && r <= '9' {
			cur += string(r)
			continue
		}
		if cur == "" {
			break
		}
		n, _ := strconv.Atoi(cur)
		nums = append(nums, n)
		cur = ""
		if r != '.' || len(nums) == 3 {
			break
		}
	}
	if len(nums) < 2 {
		return Version{}, fmt.Errorf("no X.Y version in %q", s)
	}
	v := Version{Major: nums[0], Minor: nums[1]}
	if len(nums) > 2 {
		v.Patch = nums[2]
	}
	return v, nil
}

// Syscalls are the system calls the kernel offers, from /proc/kallsyms.
type Syscalls struct {
	Source string   `json:"source"`
	Names  []string `json:"names"`
}

// CPU is the host's processor as /proc/cpuinfo and CRIU see it.
type CPU struct {
	Vendor    string `json:"vendor"`
	Family    int    `json:"family"`
	Model     int    `json:"model"`
	Stepping  int    `json:"stepping"`
	ModelName string `json:"model_name"`
	Count     int    `json:"count"`
	// Flags are the flags every processor has, sorted.
	Flags []string `json:"flags"`
	// InstructionFlags are the Flags in CRIU's instruction-capability
	// mask: what CRIU compares with --cpu-cap=ins.
	InstructionFlags []string `json:"instruction_flags"`
	// OtherInstructionFlags are instruction-set extensions user code can
	// execute that CRIU's mask does not cover.
	OtherInstructionFlags []string `json:"other_instruction_flags"`
	// PlatformFlags are the rest: platform, power and kernel flags
	// (hypervisor, ht, constant_tsc, ...). They do not decide whether a
	// process can run.
	PlatformFlags []string `json:"platform_flags"`
	XSave         XSave    `json:"xsave"`
}

// XSave is what CRIU's FPU check compares, from `criu cpuinfo dump`.
type XSave struct {
	// FeaturesMask is the xfeatures bit mask (XCR0 components).
	FeaturesMask uint64 `json:"features_mask"`
	Size         uint32 `json:"size"`
	SizeMax      uint32 `json:"size_max"`
	Source       string `json:"source"`
}

// CRIU is the CRIU binary of the host and what it says about the kernel.
type CRIU struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// VersionCode is go-criu's form: 4.2.1 is 40201.
	VersionCode int       `json:"version_code"`
	Check       CRIUCheck `json:"check"`
	// Features maps every `criu check --feature` name ferry knows to
	// supported, unsupported or unknown-to-this-version.
	Features map[string]string `json:"features"`
	// KerndatCache is the state of CRIU's kernel-feature cache
	// (/run/criu.kdat): "present", "absent", or "blocked" when a stale
	// /run/criu.kdat.tmp left by a killed CRIU stops CRIU from ever
	// writing it (every CRIU run then re-detects the kernel: ~30 ms
	// instead of ~6 ms here). "" when unknown (captured hosts).
	KerndatCache string `json:"kerndat_cache"`
}

// Kerndat cache states.
const (
	KerndatPresent = "present"
	KerndatAbsent  = "absent"
	KerndatBlocked = "blocked"
)

// Feature states.
const (
	FeatureSupported   = "supported"
	FeatureUnsupported = "unsupported"
	FeatureUnknownName = "unknown-to-this-version"
)

// CRIUCheck is the outcome of a plain `criu check`.
type CRIUCheck struct {
	// Verdict: "good" (Looks good.), "maybe" (good but some features are
	// missing), "bad" (does not look good or failed).
	Verdict  string   `json:"verdict"`
	ExitCode int      `json:"exit_code"`
	Messages []string `json:"messages"` // Error and Warn lines
}

// Filesystems are the filesystem types the kernel knows and those mounted.
type Filesystems struct {
	Supported []string `json:"supported"`
	Mounted   []string `json:"mounted"`
	// MountedSource is the file the mounts came from.
	MountedSource string `json:"mounted_source"`
}

// Virtualization says whether the host is itself a container or a VM, from
// several independent signs.
type Virtualization struct {
	Container     bool   `json:"container"`
	ContainerType string `json:"container_type"`
	VM            bool   `json:"vm"`
	VMType        string `json:"vm_type"`
	Signs         []Sign `json:"signs"`
}

// Sign is one piece of evidence for Virtualization.
type Sign struct {
	Source string `json:"source"` // what was looked at
	Value  string `json:"value"`
	Means  string `json:"means"` // "container" or "vm"
}

// Cgroups is the cgroup layout.
type Cgroups struct {
	// Mode: v1, v2, hybrid (v1 controllers plus a v2 mount), or none.
	Mode          string   `json:"mode"`
	V1Controllers []string `json:"v1_controllers"`
	V2Controllers []string `json:"v2_controllers"`
	V2Mount       string   `json:"v2_mount"`
}

// LSM lists the active Linux security modules.
type LSM struct {
	Modules []string `json:"modules"`
	// Source is /sys/kernel/security/lsm (the full list), or "sysfs" when
	// securityfs is not mounted: then only AppArmor (/sys/module/apparmor)
	// and SELinux (/sys/fs/selinux) are looked for.
	Source string `json:"source"`
}

// LSMFullList reports whether Modules is the kernel's whole list.
func (l LSM) LSMFullList() bool { return l.Source == lsmFile }

const lsmFile = "/sys/kernel/security/lsm"

// NetworkLock says which of CRIU's network-lock backends can work.
type NetworkLock struct {
	IptablesRestore string `json:"iptables_restore"` // path, "" when absent
	Nft             string `json:"nft"`              // path, "" when absent
	NFTablesKernel  string `json:"nf_tables_kernel"` // CONFIG_NF_TABLES: y, m, n or ""
}

// Runtime is one container runtime's installation.
type Runtime struct {
	Installed bool   `json:"installed"`
	Path      string `json:"path"`
	Version   string `json:"version"`
	// Daemon: "answers", "no answer" or "none" (no daemon to ask).
	Daemon        string `json:"daemon"`
	ServerVersion string `json:"server_version"`
	DaemonError   string `json:"daemon_error,omitempty"`
	// Settings holds daemon settings that matter for migration
	// (incus: the default profile's migration.stateful).
	Settings map[string]string `json:"settings,omitempty"`
}

// SchemaError is a facts file ferry cannot read.
type SchemaError struct {
	Name   string
	Reason string
	Err    error
}

func (e *SchemaError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("facts %s: %s: %v", e.Name, e.Reason, e.Err)
	}
	return fmt.Sprintf("facts %s: %s", e.Name, e.Reason)
}
func (e *SchemaError) Unwrap() error { return e.Err }
func (e *SchemaError) Hint() string {
	if strings.Contains(e.Reason, "newer") {
		return "this file was written by a newer ferry: upgrade ferry here, or re-probe with `ferry probe -o json` using this version"
	}
	return "re-create it with `ferry probe -o json > FILE` on the host"
}

// ErrNewerSchema is wrapped by a SchemaError for facts of a newer schema.
var ErrNewerSchema = errors.New("newer schema")

// Read parses saved facts (the JSON of `ferry probe -o json`). name is used
// in errors. A truncated or non-JSON file, a missing schema and a newer
// schema are errors.
func Read(r io.Reader, name string) (*Facts, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, &SchemaError{Name: name, Reason: "cannot read", Err: err}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &SchemaError{Name: name, Reason: "empty file"}
	}
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, &SchemaError{Name: name, Reason: "truncated or not JSON", Err: err}
	}
	if !strings.HasPrefix(head.Schema, schemaPrefix) {
		return nil, &SchemaError{Name: name, Reason: fmt.Sprintf("not a ferry facts file (schema %q, want %q)", head.Schema, Schema)}
	}
	n, err := strconv.Atoi(strings.TrimPrefix(head.Schema, schemaPrefix))
	if err != nil || n < 1 {
		return nil, &SchemaError{Name: name, Reason: fmt.Sprintf("bad schema %q", head.Schema)}
	}
	if n > 1 {
		return nil, &SchemaError{Name: name, Reason: fmt.Sprintf("schema %s is newer than this ferry's %s", head.Schema, Schema), Err: ErrNewerSchema}
	}
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, &SchemaError{Name: name, Reason: "does not match " + Schema, Err: err}
	}
	if f.Unknown == nil {
		f.Unknown = map[string]string{}
	}
	return &f, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// uniqSorted sorts s and drops duplicates and empty strings.
func uniqSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if v == "" || (i > 0 && v == s[i-1]) {
			continue
		}
		out = append(out, v)
	}
	if out == nil {
		return []string{}
	}
	return out
}
