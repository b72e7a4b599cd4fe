// Package hosttest provides real hosts for tests: an OpenSSH server on a
// loopback port with throw-away keys, so that packages can run their
// end-to-end tests over SSH exactly as against a remote machine.
//
//	d := hosttest.StartSSHD(t)            // skips without root or sshd (fails in CI)
//	h := d.Host(t, d.Options)             // a *host.SSH, closed in t.Cleanup
//	out, err := host.Output(ctx, h, "uname", "-r")
//
// or through a spec, as the CLI does:
//
//	h, err := host.New(d.Spec, host.WithSSHOptions(d.Options))
//
// The server runs as the current user (root in CI) on this machine, so files
// the test writes locally are the remote host's files.
//
// StartNamespacedSSHD runs sshd as the init of its own network, mount and
// pid namespaces, reached over a veth pair: a remote host to move process
// trees to.
package hosttest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

// SSHD is a running sshd that accepts the test's user key for the current
// user on 127.0.0.1.
type SSHD struct {
	// Spec is the host spec reaching it: ssh://USER@127.0.0.1:PORT.
	Spec   string
	Target host.SSHTarget
	Port   int
	// Options make the SSH host use the test's key, known_hosts and
	// ssh_config only, never the machine's ~/.ssh.
	Options host.SSHOptions
	// Dir holds the keys, configs and the log.
	Dir string
	// HostKey is the server's public host key ("ssh-ed25519 AAAA...").
	HostKey string
	// KnownHosts is a known_hosts file that trusts HostKey for the port.
	KnownHosts string
	// UserKey is the private key the server accepts.
	UserKey string

	cmd *exec.Cmd
	log string // sshd's log file
}

// StartSSHD starts sshd in t's temporary directory and stops it in
// t.Cleanup. It needs root (sshd drops privileges per connection) and the
// OpenSSH server and client; without them the test skips, or fails in CI.
// The config lines ("MaxSessions 2") go first in sshd_config, so they win
// over hosttest's own (sshd keeps the first value of a keyword); no Match
// blocks.
func StartSSHD(t testing.TB, config ...string) *SSHD {
	t.Helper()
	sshd, u, d, hostPriv, clientConfig := prepareSSHD(t)
	dir := d.Dir

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		configFile := filepath.Join(dir, "sshd_config")
		writeFile(t, configFile, sshdConfig(config, port, "127.0.0.1", dir, hostPriv))
		// A file, not a pipe: sshd's connection processes inherit it and
		// may outlive the listener a moment.
		d.log = filepath.Join(dir, fmt.Sprintf("sshd-%d.log", attempt))
		logFile, err := os.Create(d.log)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sshd, "-D", "-e", "-f", configFile)
		cmd.Stdout = logFile
		cmd.Stderr = logFile
		// Its own process group, and gone with the test binary even when
		// that dies of a test timeout.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		err = cmd.Start()
		logFile.Close()
		if err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if err := d.waitListening(port, exited); err != nil {
			// Most likely another test took the port between freePort and
			// sshd's bind: try another one.
			stopProcess(cmd, exited)
			lastErr = fmt.Errorf("%w; sshd log:\n%s", err, d.Log())
			continue
		}
		t.Cleanup(func() {
			stopProcess(cmd, exited)
			if t.Failed() {
				t.Logf("sshd log:\n%s", d.Log())
			}
		})
		d.cmd = cmd
		d.Port = port
		break
	}
	if d.cmd == nil {
		t.Fatalf("sshd did not start: %v", lastErr)
	}

	d.Target = host.SSHTarget{User: u.Username, Host: "127.0.0.1", Port: d.Port}
	d.Spec = d.Target.String()
	d.KnownHosts = filepath.Join(dir, "known_hosts")
	d.WriteKnownHosts(t, d.KnownHosts, d.HostKey)
	d.Options = host.SSHOptions{
		ConfigFile:     clientConfig,
		IdentityFile:   d.UserKey,
		KnownHostsFile: d.KnownHosts,
		ConnectTimeout: 5 * time.Second,
	}
	return d
}

// Host returns an SSH host for the server built with opt (d.Options with
// changes), closed in t.Cleanup.
func (d *SSHD) Host(t testing.TB, opt host.SSHOptions) *host.SSH {
	t.Helper()
	h, err := host.NewSSH(d.Target, opt)
	if err != nil {
		t.Fatalf("new ssh host: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close %s: %v", h.Name(), err)
		}
	})
	return h
}

// WriteKnownHosts writes a known_hosts file that holds key (a public key
// line, "TYPE BASE64 [COMMENT]") for this server's address.
func (d *SSHD) WriteKnownHosts(t testing.TB, path, key string) {
	t.Helper()
	f := strings.Fields(key)
	if len(f) < 2 {
		t.Fatalf("not a public key: %q", key)
	}
	writeFile(t, path, fmt.Sprintf("[%s]:%d %s %s\n", d.Target.Host, d.Port, f[0], f[1]))
}

// Log is what sshd logged so far.
func (d *SSHD) Log() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(cannot read the sshd log: %v)", err)
	}
	return string(b)
}

// Logins counts the connections sshd accepted (one per handshake; commands
// sharing a connection do not count).
func (d *SSHD) Logins() int { return strings.Count(d.Log(), "Accepted publickey for ") }

// GenerateKey makes an ed25519 key pair dir/name and dir/name.pub with
// ssh-keygen and returns the private key's path and the public key line.
func GenerateKey(t testing.TB, dir, name string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := host.Output(ctx, host.Local{}, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f", priv); err != nil {
		t.Fatalf("generate key: %v", err)
	}
	b, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(b))
}

// ClosedPort returns a loopback port nothing listens on (for a moment).
func ClosedPort(t testing.TB) int { return freePort(t) }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits for sshd to say it listens: a connection alone could
// reach another program that took the port first.
func (d *SSHD) waitListening(port int, exited <-chan struct{}) error {
	return d.waitListeningOn("127.0.0.1", port, exited)
}

func (d *SSHD) waitListeningOn(addr string, port int, exited <-chan struct{}) error {
	want := fmt.Sprintf("Server listening on %s port %d.", addr, port)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited")
		default:
		}
		if strings.Contains(d.Log(), want) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("sshd did not say %q", want)
}

// stopProcess ends the listening sshd (its process group: it started no
// other processes there; sessions run in their own).
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	if syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) != nil {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sshdConfig is a test sshd's configuration: config first (sshd keeps the
// first value of a keyword), then key-only root logins from dir's
// authorized_keys on listen:port.
func sshdConfig(config []string, port int, listen, dir, hostKey string) string {
	return strings.Join([]string{
		strings.Join(config, "\n"),
		"Port " + strconv.Itoa(port),
		"ListenAddress " + listen,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"UsePAM no",
		"PrintMotd no",
		"PrintLastLog no",
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"LogLevel INFO",
		// Debian's bash sources ~/.bashrc for commands run by sshd, unless
		// it is not the first shell level: the machine's login scripts
		// (pyenv's rehash here, racing with itself) stay out of the tests.
		"SetEnv SHLVL=1",
		"",
	}, "\n")
}

// prepareSSHD checks what a test sshd needs and writes its files into a
// new temporary directory: host and user keys, authorized_keys, and a
// client config that keeps the machine's ~/.ssh, agent and global known
// hosts out of the tests. It returns sshd's path, the user, the SSHD with
// Dir and keys set, the host key's path and the client config's path.
func prepareSSHD(t testing.TB) (sshd string, u *user.User, d *SSHD, hostPriv, clientConfig string) {
	t.Helper()
	testenv.RequireRoot(t)
	sshd = testenv.RequireCommand(t, "sshd", "ssh", "ssh-keygen")
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	// The privilege separation directory, normally made by the service
	// unit.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create /run/sshd: %v", err)
	}
	dir := t.TempDir()
	d = &SSHD{Dir: dir}
	var hostPub, userPub string
	hostPriv, hostPub = GenerateKey(t, dir, "ssh_host_ed25519_key")
	d.HostKey = hostPub
	d.UserKey, userPub = GenerateKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), userPub+"\n")
	clientConfig = filepath.Join(dir, "ssh_config")
	writeFile(t, clientConfig, strings.Join([]string{
		"IdentityAgent none",
		"GlobalKnownHostsFile /dev/null",
		"UpdateHostKeys no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"",
	}, "\n"))
	return sshd, u, d, hostPriv, clientConfig
}
