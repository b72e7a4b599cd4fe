package hosttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

// NamespacedPort is the port the namespaced sshd listens on: it has its
// network namespace to itself.
const NamespacedPort = 2222

// NamespacedSSHD is an sshd that is a remote machine in all that matters
// for moving processes: it runs as the init of its own pid namespace (a
// tree restored there keeps its pids without clashing with this
// machine's), in its own mount namespace (mounts made there stay there)
// and its own network namespace, reached from the test over a veth pair
// with a /30 of 10.253.0.0/16 (loopback otherwise). The file systems are
// this machine's: a process's files are on the "remote" host too.
//
//	d := hosttest.StartNamespacedSSHD(t)
//	h, err := host.New(d.Spec, host.WithSSHOptions(d.Options))
type NamespacedSSHD struct {
	SSHD
	// PID is the namespace's init (sshd) as this machine sees it.
	PID int
	// Addr is the server's address, HostAddr the test side's, both on
	// the link Link (the test side's veth).
	Addr, HostAddr, Link string
}

// StartNamespacedSSHD starts sshd in new network, mount and pid
// namespaces (unshare), links them to the test with a veth pair, and
// removes all of it in t.Cleanup: killing sshd, the namespace's init, kills
// every process left in its pid namespace. It needs root, sshd, ssh,
// unshare, nsenter and ip; without them the test skips (fails in CI).
func StartNamespacedSSHD(t testing.TB, config ...string) *NamespacedSSHD {
	t.Helper()
	testenv.RequireCommand(t, "unshare", "nsenter", "ip")
	sshd, u, base, hostPriv, clientConfig := prepareSSHD(t)
	base.Port = NamespacedPort
	d := &NamespacedSSHD{SSHD: *base}
	dir := base.Dir
	configFile := filepath.Join(dir, "sshd_config")
	// The namespace has only lo and the test's link.
	writeFile(t, configFile, sshdConfig(config, NamespacedPort, "0.0.0.0", dir, hostPriv))

	d.log = filepath.Join(dir, "sshd.log")
	logFile, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	// unshare forks sshd as pid 1 of the new pid namespace; --kill-child
	// kills it (and with it the namespace) when unshare dies.
	cmd := exec.Command("unshare", "--net", "--pid", "--fork", "--mount", "--mount-proc", "--kill-child",
		"--", sshd, "-D", "-e", "-f", configFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		t.Fatalf("start unshare sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.cmd = cmd
	t.Cleanup(func() {
		if d.PID > 0 {
			_ = syscall.Kill(d.PID, syscall.SIGKILL)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("unshare (pid %d) did not exit", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("namespaced sshd log:\n%s", d.Log())
		}
	})
	if err := d.waitListeningOn("0.0.0.0", NamespacedPort, exited); err != nil {
		t.Fatalf("namespaced sshd: %v\n%s", err, d.Log())
	}
	d.PID = childOf(t, cmd.Process.Pid)
	d.link(t)

	d.Target = host.SSHTarget{User: u.Username, Host: d.Addr, Port: NamespacedPort}
	d.Spec = d.Target.String()
	d.KnownHosts = filepath.Join(dir, "known_hosts")
	d.WriteKnownHosts(t, d.KnownHosts, d.HostKey)
	d.Options = host.SSHOptions{ConfigFile: clientConfig, IdentityFile: d.UserKey, KnownHostsFile: d.KnownHosts, ConnectTimeout: 5 * time.Second}
	waitConnect(t, net.JoinHostPort(d.Addr, strconv.Itoa(NamespacedPort)))
	return d
}

// childOf is the one child of pid (unshare's forked sshd).
func childOf(t testing.TB, pid int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, err := strconv.Atoi(f[0])
			if err == nil {
				return n
			}
		}
	}
	t.Fatalf("unshare (pid %d) has no child", pid)
	return 0
}

// link makes the veth pair between the test and the namespace, on a /30
// no interface of this machine uses yet.
func (d *NamespacedSSHD) link(t testing.TB) {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	d.Link = "fsh" + suffix
	peer := "fsr" + suffix
	for i := 0; ; i++ {
		x, _ := rand.Int(rand.Reader, big.NewInt(256))
		y, _ := rand.Int(rand.Reader, big.NewInt(64))
		base := fmt.Sprintf("10.253.%d.%d", x.Int64(), 4*y.Int64())
		out, err := exec.Command("ip", "-o", "addr", "show", "to", base+"/30").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr show: %v %s", err, out)
		}
		if len(strings.TrimSpace(string(out))) == 0 {
			d.HostAddr = fmt.Sprintf("10.253.%d.%d", x.Int64(), 4*y.Int64()+1)
			d.Addr = fmt.Sprintf("10.253.%d.%d", x.Int64(), 4*y.Int64()+2)
			break
		}
		if i > 20 {
			t.Fatalf("no free /30 in 10.253.0.0/16")
		}
	}
	run := func(argv ...string) {
		t.Helper()
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", strings.Join(argv, " "), err, out)
		}
	}
	run("ip", "link", "add", d.Link, "type", "veth", "peer", "name", peer, "netns", strconv.Itoa(d.PID))
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", d.Link).Run() })
	run("ip", "addr", "add", d.HostAddr+"/30", "dev", d.Link)
	run("ip", "link", "set", d.Link, "up")
	in := []string{"nsenter", "-t", strconv.Itoa(d.PID), "-n"}
	run(append(in, "ip", "link", "set", "lo", "up")...)
	run(append(in, "ip", "addr", "add", d.Addr+"/30", "dev", peer)...)
	run(append(in, "ip", "link", "set", peer, "up")...)
}

func waitConnect(t testing.TB, addr string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("connect to the namespaced sshd at %s: %v", addr, err)
}

// Run runs argv inside the namespaces (network, mount and pid) without
// ssh, as the test's own view of the "remote" machine.
func (d *NamespacedSSHD) Run(t testing.TB, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"nsenter", "-t", strconv.Itoa(d.PID), "-n", "-m", "-p", "--"}, argv...)
	out, err := exec.CommandContext(ctx, full[0], full[1:]...).CombinedOutput()
	return string(out), err
}

// MountTmpfs mounts an empty tmpfs on dir inside the namespace only: the
// "remote" host then has its own dir, empty, while the test's stays as it
// is. dir must exist.
func (d *NamespacedSSHD) MountTmpfs(t testing.TB, dir string) {
	t.Helper()
	if out, err := d.Run(t, "mount", "-t", "tmpfs", "-o", "mode=0755", "ferry-test", dir); err != nil {
		t.Fatalf("mount a tmpfs on %s in the namespace: %v %s", dir, err, out)
	}
}

// Owns reports whether pid (as this machine sees it) lives in the
// namespace's pid namespace.
func (d *NamespacedSSHD) Owns(pid int) bool {
	mine, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", d.PID))
	its, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err1 == nil && err2 == nil && mine == its
}

// HostPID is the pid, as this machine sees it, of the process whose pid is
// nsPID inside the namespace (0 when there is none).
func (d *NamespacedSSHD) HostPID(nsPID int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(l, "NSpid:")
			if !ok {
				continue
			}
			f := strings.Fields(v)
			if len(f) >= 2 && f[len(f)-1] == strconv.Itoa(nsPID) && d.Owns(pid) {
				return pid
			}
		}
	}
	return 0
}
