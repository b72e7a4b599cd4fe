package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The stderr files are what ssh 9.2 (Debian 12) printed with LogLevel=ERROR
// and BatchMode=yes; remote-exit-255.txt is a remote program's own message.
func TestClassifySSH(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file       string
		wantKind   string // "" for not an ssh failure
		wantDetail string
		wantHint   string
	}{
		{"host-key-changed.txt", "host key changed", "Host key for [127.0.0.1]:42223 has changed and you have requested strict checking.", `ssh suggests: ssh-keygen -f "known_hosts" -R "[127.0.0.1]:42223"`},
		{"host-key-unknown.txt", "host key not trusted", "Host key verification failed.", "ssh-keyscan"},
		{"auth-failed.txt", "authentication failed", "root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).", "authorized_keys"},
		{"connection-refused.txt", "connection refused", "ssh: connect to host 127.0.0.1 port 1: Connection refused", "sshd runs"},
		{"resolve-failed.txt", "cannot resolve host name", "ssh: Could not resolve hostname nosuch.invalid: Name or service not known", "HostName"},
		{"banner-timeout.txt", "connection timed out", "Connection timed out during banner exchange", "firewalls"},
		{"closed-at-once.txt", "connection lost", "kex_exchange_identification: read: Connection reset by peer", "MaxStartups"},
		{"remote-exit-255.txt", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			stderr, err := os.ReadFile(filepath.Join("testdata", "ssh-stderr", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			ce := classifySSH(stderr, false)
			if tt.wantKind == "" {
				if ce != nil {
					t.Fatalf("a remote program's stderr taken for ssh's: %v", ce)
				}
				// Sure that ssh failed (the master did not start):
				// still an error, quoting ssh.
				ce = classifySSH(stderr, true)
				if ce == nil || ce.Kind != "ssh failed" || !strings.Contains(ce.Error(), strings.TrimSpace(string(stderr))) {
					t.Errorf("sure = true: %v", ce)
				}
				return
			}
			if ce == nil {
				t.Fatalf("not recognised")
			}
			if ce.Kind != tt.wantKind || ce.Detail != tt.wantDetail {
				t.Errorf("got %q (%q), want %q (%q)", ce.Kind, ce.Detail, tt.wantKind, tt.wantDetail)
			}
			if !strings.Contains(ce.Hint(), tt.wantHint) {
				t.Errorf("hint %q does not mention %q", ce.Hint(), tt.wantHint)
			}
			if strings.Contains(ce.Error(), "\n") {
				t.Errorf("message is not one line: %q", ce.Error())
			}
		})
	}
}

func TestPIDWatcher(t *testing.T) {
	t.Parallel()
	const m = "ferry-remote-pid-0123456789abcdef="
	noteA := "mux_client_request_session: session request failed: Session open refused by peer\r\n"
	noteB := "ControlSocket /tmp/ferry-ssh-1/0f3c already exists, disabling multiplexing\r\n"
	tests := []struct {
		name    string
		writes  []string
		wantPID int
		wantOut string
	}{
		{"one write", []string{m + "42\nerr"}, 42, "err"},
		{"split", []string{"ferry-re", "mote-pid-0123456789abcdef=4", "2", "\n", "e", "rr\n"}, 42, "err\n"},
		{"startup noise first", []string{"pyenv: cannot rehash\n", m + "7\n", "err\n"}, 7, "pyenv: cannot rehash\nerr\n"},
		{"ssh falls back to its own connection", []string{noteA + noteB + m + "7\nerr\n"}, 7, "err\n"},
		{"notes after the pid are the program's", []string{m + "7\n" + noteB}, 7, noteB},
		{"another command's marker", []string{"ferry-remote-pid-ffffffffffffffff=9\n", m + "x\n"}, 0, "ferry-remote-pid-ffffffffffffffff=9\n" + m + "x\n"},
		{"no marker (ssh failed)", []string{"Host key verification failed.\n"}, 0, "Host key verification failed.\n"},
		{"long line", []string{strings.Repeat("x", maxHeadLine+1), "y\n", m + "3\n"}, 3, strings.Repeat("x", maxHeadLine+1) + "y\n"},
		{"nothing", nil, 0, ""},
		{"no newline at the end", []string{"bash: oops"}, 0, "bash: oops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			w := newPIDWatcher(&out, m)
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if w.PID() != tt.wantPID {
				t.Errorf("pid = %d, want %d", w.PID(), tt.wantPID)
			}
			w.flush()
			if diff := cmp.Diff(tt.wantOut, out.String()); diff != "" {
				t.Errorf("forwarded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOut, string(filterStderr([]byte(strings.Join(tt.writes, "")), m))); diff != "" {
				t.Errorf("filterStderr (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSSHArgs(t *testing.T) {
	t.Parallel()
	s, err := NewSSH(SSHTarget{User: "ops", Host: "db1", Port: 2222}, SSHOptions{
		ConfigFile:     "/etc/ferry/ssh_config",
		IdentityFile:   "/keys/id",
		KnownHostsFile: "/a dir/known_hosts",
		HostKeyPolicy:  "Accept-New",
		ConnectTimeout: 1500 * time.Millisecond,
		ControlPersist: 5 * time.Minute,
		Options:        []string{"ProxyJump=bastion", "BatchMode=no"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ssh", "-F", "/etc/ferry/ssh_config",
		"-i", "/keys/id", "-o", "IdentitiesOnly=yes",
		"-o", `UserKnownHostsFile="/a dir/known_hosts"`,
		"-o", "StrictHostKeyChecking=accept-new",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "LogLevel=ERROR", "-o", "ClearAllForwardings=yes",
		"-o", "ControlMaster=auto", "-o", "ControlPath=/tmp/ferry-ssh-1%%/%C", "-o", "ControlPersist=300",
		// After ferry's own: ssh keeps the first value, BatchMode stays yes.
		"-o", "ProxyJump=bastion", "-o", "BatchMode=no",
		"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
		"-l", "ops", "-p", "2222",
	}
	if diff := cmp.Diff(want, s.baseArgsDir("/tmp/ferry-ssh-1%")); diff != "" {
		t.Errorf("with sharing (-want +got):\n%s", diff)
	}

	s, err = NewSSH(SSHTarget{Host: "db1"}, SSHOptions{ControlPersist: -1})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-o", "ClearAllForwardings=yes",
		"-o", "ControlMaster=no", "-o", "ControlPath=none",
		"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
	}
	if diff := cmp.Diff(want, s.baseArgsDir("/tmp/x")); diff != "" {
		t.Errorf("without sharing (-want +got):\n%s", diff)
	}
}

func TestMakeControlDir(t *testing.T) {
	t.Setenv("TMPDIR", "/"+strings.Repeat("long-", 20))
	dir, err := makeControlDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", dir, st.Mode(), err)
	}
	// Room for ssh's temporary socket name, DIR/<40 hex>.<16 chars>.
	if n := len(dir) + 1 + 40 + 17; n > 104 {
		t.Errorf("socket paths in %s are %d bytes long", dir, n)
	}
}

func TestSSHWithoutClient(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	s, err := NewSSH(SSHTarget{Host: "db1"}, SSHOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, opt := range []SSHOptions{{}, {ControlPersist: -1}} {
		s.opt = opt
		_, err = s.Run(context.Background(), []string{"true"}, RunOptions{})
		var ce *ConnectError
		if !errors.As(err, &ce) || !errors.Is(err, ErrConnect) || !strings.Contains(ce.Hint(), "openssh-client") {
			t.Errorf("%+v: err = %v, want a ConnectError saying to install ssh", opt, err)
		}
	}
}
