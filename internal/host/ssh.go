package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SSH is a remote machine reached through the system's OpenSSH client, so the
// user's ~/.ssh/config, agent, ProxyJump and known_hosts work as they do for
// ssh itself.
//
// Commands go to the remote login shell (ssh has no other way to pass them),
// so Run quotes every argv word with QuoteWord: the remote shell must be a
// POSIX shell (sh, bash, dash, zsh, ksh). Host-key checking is never turned off: ssh runs with
// BatchMode=yes, so an unknown or changed host key is refused instead of
// prompted for.
//
// Connections are shared: the first Run starts a master connection
// (ControlMaster) whose socket lives in a private directory, later commands
// reuse it, and the master exits after ControlPersist of idleness or on
// Close. Close the host when done with it.
//
// sshd does not signal a command without a terminal when its client goes
// away, so Run has the remote shell report its pid first (it is the process
// group sshd made with setsid), and a timeout or cancel kills that group over
// a second command before killing the local ssh. A remote program that
// leaves its process group (daemons, setsid) outlives the timeout.
type SSH struct {
	target SSHTarget
	opt    SSHOptions

	mu  sync.Mutex // guards dir and serialises starting the master
	dir string     // the control directory, "" until the first Run
}

var _ Host = (*SSH)(nil)
var _ PathFinder = (*SSH)(nil)

// SSHOptions tune how ssh is invoked. The zero value uses the user's ssh
// configuration as it is, plus ferry's connection sharing.
type SSHOptions struct {
	// ConfigFile is passed as `ssh -F`: it replaces ~/.ssh/config and
	// /etc/ssh/ssh_config.
	ConfigFile string
	// IdentityFile is passed as `ssh -i`, with IdentitiesOnly=yes so that
	// agent keys are not offered first.
	IdentityFile string
	// KnownHostsFile replaces the user's known_hosts file
	// (UserKnownHostsFile).
	KnownHostsFile string
	// HostKeyPolicy sets StrictHostKeyChecking: "" leaves it to the ssh
	// configuration (by default unknown keys are refused), "yes" refuses
	// unknown keys, "accept-new" records the key of a host never seen
	// before. Changed keys are always refused; "no" is not accepted.
	HostKeyPolicy string
	// ConnectTimeout bounds the TCP connection and the SSH handshake;
	// 0 means 10 seconds.
	ConnectTimeout time.Duration
	// ControlPersist is how long an idle master connection stays up;
	// 0 means 60 seconds, negative turns connection sharing off.
	ControlPersist time.Duration
	// Options are more `ssh -o` options ("ProxyJump=bastion"). They cannot
	// override the options above, BatchMode, or connection sharing; they
	// can override ServerAliveInterval=15 and ServerAliveCountMax=4.
	Options []string
}

const (
	defaultConnectTimeout = 10 * time.Second
	defaultControlPersist = 60 * time.Second
	// maxControlDir keeps DIR/%C.XXXXXXXXXXXXXXXX (ssh's temporary socket
	// name: 40 hex digits, a dot, 16 random characters) under the 104
	// bytes a unix socket path may have on the strictest systems.
	maxControlDir = 104 - 1 - 40 - 17
)

// NewSSH returns the host for t. It does not contact the host.
func NewSSH(t SSHTarget, opt SSHOptions) (*SSH, error) {
	if t.Host == "" || strings.HasPrefix(t.Host, "-") || strings.HasPrefix(t.User, "-") {
		return nil, &SpecError{Spec: t.String(), Reason: "missing host name, or a name starting with '-'"}
	}
	switch strings.ToLower(opt.HostKeyPolicy) {
	case "", "yes", "accept-new":
	default:
		return nil, &optionError{fmt.Sprintf("host key policy %q is not allowed: use yes or accept-new", opt.HostKeyPolicy), noHostKeyHint}
	}
	for _, o := range opt.Options {
		k, v, ok := splitSSHOption(o)
		if !ok {
			return nil, &optionError{fmt.Sprintf("ssh option %q is not KEY=VALUE", o), "write ssh options as in ssh_config, KEY=VALUE (ProxyJump=bastion)"}
		}
		if v = strings.ToLower(strings.Trim(v, `"`)); strings.EqualFold(k, "StrictHostKeyChecking") && (v == "no" || v == "off") {
			return nil, &optionError{fmt.Sprintf("ssh option %q turns host key checking off", o), noHostKeyHint}
		}
	}
	return &SSH{target: t, opt: opt}, nil
}

type optionError struct{ msg, hint string }

func (e *optionError) Error() string { return e.msg }
func (e *optionError) Hint() string  { return e.hint }

const noHostKeyHint = "ferry never turns ssh host key checking off; add the host's key to known_hosts after checking its fingerprint, or use accept-new for hosts never seen before"

func splitSSHOption(o string) (key, value string, ok bool) {
	i := strings.IndexAny(o, "= ")
	if i <= 0 || strings.HasPrefix(o, "-") {
		return "", "", false
	}
	return o[:i], strings.TrimSpace(o[i+1:]), true
}

func (s *SSH) Name() string { return s.target.String() }

// Target is the host this SSH reaches.
func (s *SSH) Target() SSHTarget { return s.target }

// Run runs argv on the remote host. See Host for the contract. The remote
// program's exit code comes back as is; when ssh itself fails (exit 255 with
// ssh's own message) the *CommandError wraps a *ConnectError. A program the
// remote shell cannot find (exit 127) wraps ErrNotFound. When the timeout
// fires or ctx is cancelled, the remote command's process group is killed
// as well as the local ssh.
func (s *SSH) Run(ctx context.Context, argv []string, opt RunOptions) (*Result, error) {
	return s.run(ctx, argv, opt, true)
}

// remotePIDMarker starts the line the remote shell writes on stderr when
// Run tracks the remote process, before the pid: the shell's own pid, which
// is also its process group (sshd starts each session's shell with setsid).
// A random part per command keeps the remote program from faking it.
func remotePIDMarker() string {
	return fmt.Sprintf("ferry-remote-pid-%016x=", rand.Uint64())
}

// remotePIDWait is how long a stopped Run waits for the remote pid before
// it gives up killing the remote command.
const remotePIDWait = 2 * time.Second

// run runs argv remotely. With track, the remote shell reports its pid
// and execs argv, so that a timeout can kill the remote process group;
// without it argv goes to the shell as is (shell builtins work).
func (s *SSH) run(ctx context.Context, argv []string, opt RunOptions, track bool) (*Result, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: empty command", s.Name())
	}
	if strings.HasPrefix(argv[0], "-") || argv[0] == "" {
		// The remote shell's exec (or env) would take it for an option.
		return nil, fmt.Errorf("%s: program name %q is empty or starts with '-'", s.Name(), argv[0])
	}
	remote := argv
	if len(opt.Env) > 0 {
		for _, kv := range opt.Env {
			if !envAssignment.MatchString(kv) {
				return nil, fmt.Errorf("%s: environment entry %q is not NAME=VALUE", s.Name(), kv)
			}
		}
		remote = append(append([]string{"env"}, opt.Env...), argv...)
	}
	command := Quote(remote)
	marker := remotePIDMarker()
	if track {
		command = "echo " + marker + "$$ >&2 && exec " + command
	}

	timeout := opt.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// The Env is for the remote side, not for the local ssh.
	local := opt
	local.Env = nil
	local.Timeout = -1

	args, err := s.prepare(ctx, argv, timeout)
	if err != nil {
		return nil, err
	}
	args = append(args, "-T", "--", s.target.Host, command)

	// When ctx is done, the remote process group is killed first, then
	// the local ssh: its session carries the remote pid, and ssh's own
	// exit follows the remote command's.
	runCtx := ctx
	var pid *pidWatcher
	killed := make(chan struct{})
	finished := make(chan struct{})
	if track {
		pid = newPIDWatcher(opt.Stderr, marker)
		local.Stderr = pid
		var cancelRun context.CancelFunc
		runCtx, cancelRun = context.WithCancel(context.WithoutCancel(ctx))
		defer cancelRun()
		go func() {
			defer close(killed)
			select {
			case <-ctx.Done():
				// A command that is still starting reports its pid in
				// a moment.
				select {
				case <-pid.known:
				case <-finished:
				case <-time.After(remotePIDWait):
				}
				if p := pid.PID(); p > 0 {
					s.killRemote(p)
				}
				cancelRun()
			case <-finished:
			}
		}()
	} else {
		close(killed)
	}
	res, err := execRun(runCtx, s.Name(), args, local)
	close(finished)
	<-killed
	if pid != nil {
		pid.flush()
	}
	if res != nil {
		res.Argv = argv
		if track {
			res.Stderr = filterStderr(res.Stderr, marker)
		}
	}
	if err != nil && ctx.Err() != nil && res != nil {
		// The command was stopped, whatever its exit said.
		res.ExitCode = -1
		cerr := &CommandError{Host: s.Name(), Argv: argv, ExitCode: -1, Stderr: trimStderr(res.Stderr), Err: ctx.Err()}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cerr.TimedOut = true
			cerr.Timeout = timeout
		}
		return res, cerr
	}
	var cerr *CommandError
	if !errors.As(err, &cerr) {
		return res, err
	}
	cerr.Argv = argv
	if res != nil {
		cerr.Stderr = trimStderr(res.Stderr)
	}
	switch {
	case cerr.TimedOut:
		cerr.Timeout = timeout
	case cerr.ExitCode == 255:
		if ce := classifySSH(res.Stderr, false); ce != nil {
			cerr.ExitCode = -1
			cerr.Err = ce
		}
	case cerr.ExitCode == 127:
		cerr.Err = fmt.Errorf("%w: %s", ErrNotFound, argv[0])
	case cerr.ExitCode < 0 && errors.Is(cerr.Err, ErrNotFound):
		// The local ssh client is missing.
		cerr.Err = &ConnectError{Kind: "no ssh client", Detail: "ssh is not on PATH", Err: cerr.Err}
	}
	return res, cerr
}

// killRemote kills the remote process group pgid, over a fresh command: the
// caller's context is done.
func (s *SSH) killRemote(pgid int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.run(ctx, []string{"kill", "-KILL", "--", "-" + strconv.Itoa(pgid)}, RunOptions{Timeout: -1}, false)
}

// pidWatcher reads stderr as it comes: it takes out the remote pid line
// (marker NUMBER) and, before it, ssh's notes about falling back to a
// connection of its own; everything else goes on to w (which may be nil).
// Lines before the pid line come from ssh and the remote shell's startup
// files.
type pidWatcher struct {
	w      io.Writer
	marker []byte
	known  chan struct{} // closed once the pid line is in, or on flush

	mu   sync.Mutex
	head []byte // an incomplete line before the pid line
	done bool
	pid  int
}

func newPIDWatcher(w io.Writer, marker string) *pidWatcher {
	return &pidWatcher{w: w, marker: []byte(marker), known: make(chan struct{})}
}

// maxHeadLine bounds how much of a line without newline is held back
// while looking for the pid line.
const maxHeadLine = 4096

func (p *pidWatcher) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return p.forward(b)
	}
	p.head = append(p.head, b...)
	for !p.done {
		i := bytes.IndexByte(p.head, '\n')
		if i < 0 {
			if len(p.head) > maxHeadLine {
				if _, err := p.forward(p.head); err != nil {
					return 0, err
				}
				p.head = p.head[:0]
			}
			break
		}
		line := p.head[:i+1]
		p.head = p.head[i+1:]
		switch {
		case bytes.HasPrefix(line, p.marker):
			if pid, err := strconv.Atoi(string(bytes.TrimSpace(line[len(p.marker):]))); err == nil {
				p.pid = pid
				p.done = true
				close(p.known)
				continue
			}
		case sshMuxNote.Match(line):
			continue
		}
		if _, err := p.forward(line); err != nil {
			return 0, err
		}
	}
	if p.done && len(p.head) > 0 {
		rest := p.head
		p.head = nil
		if _, err := p.forward(rest); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// sshMuxNote matches what ssh says when the master refuses another session
// (sshd's MaxSessions) and it connects on its own instead.
var sshMuxNote = regexp.MustCompile(`^(mux_client_request_session: session request failed: |ControlSocket .* already exists, disabling multiplexing\r?\n$)`)

func (p *pidWatcher) forward(b []byte) (int, error) {
	if p.w == nil || len(b) == 0 {
		return len(b), nil
	}
	return p.w.Write(b)
}

// flush passes on a last line that never got its newline.
func (p *pidWatcher) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		close(p.known)
		p.forward(p.head)
		p.head = nil
	}
}

// PID is the remote pid, 0 while not known.
func (p *pidWatcher) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// filterStderr is what a pidWatcher lets through of stderr.
func filterStderr(stderr []byte, marker string) []byte {
	var out bytes.Buffer
	w := newPIDWatcher(&out, marker)
	w.Write(stderr)
	w.flush()
	return out.Bytes()
}

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// Open reads a remote file through `cat`. The whole file is read before Open
// returns.
func (s *SSH) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	res, err := s.Run(ctx, []string{"cat", "--", path}, RunOptions{Env: []string{"LC_ALL=C"}})
	if err != nil {
		var cerr *CommandError
		if errors.As(err, &cerr) && cerr.ExitCode > 0 {
			switch {
			case strings.Contains(cerr.Stderr, "No such file or directory"), strings.Contains(cerr.Stderr, "Not a directory"):
				return nil, fmt.Errorf("%s: open %s: %w", s.Name(), path, fs.ErrNotExist)
			case strings.Contains(cerr.Stderr, "Permission denied"):
				return nil, fmt.Errorf("%s: open %s: %w", s.Name(), path, fs.ErrPermission)
			}
		}
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(res.Stdout))), nil
}

// LookPath asks the remote shell where name is (`command -v`).
func (s *SSH) LookPath(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "-") {
		return "", fmt.Errorf("%s: look up %q: %w", s.Name(), name, ErrNotFound)
	}
	res, err := s.run(context.Background(), []string{"command", "-v", name}, RunOptions{Timeout: time.Minute}, false)
	if err != nil {
		var cerr *CommandError
		if errors.As(err, &cerr) && cerr.ExitCode > 0 {
			return "", fmt.Errorf("%s: look up %q: %w", s.Name(), name, ErrNotFound)
		}
		return "", err
	}
	p := strings.TrimSpace(string(res.Stdout))
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "\n") {
		// A shell builtin, function or alias: not a program.
		return "", fmt.Errorf("%s: look up %q: %w", s.Name(), name, ErrNotFound)
	}
	return p, nil
}

// Close stops the master connection, if one runs, and removes the control
// directory. The host stays usable: the next Run connects again.
func (s *SSH) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	var err error
	if s.masterSocket() != "" {
		args := append(s.baseArgs(), "-O", "exit", "--", s.target.Host)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = execRun(ctx, s.Name(), args, RunOptions{Timeout: -1})
		var cerr *CommandError
		if err != nil && (s.masterSocket() == "" || errors.As(err, &cerr) && strings.Contains(cerr.Stderr, "Control socket connect(")) {
			err = nil // it was already gone, or died leaving its socket
		}
	}
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	s.dir = ""
	if err != nil {
		return fmt.Errorf("%s: stop the ssh master connection: %w", s.Name(), err)
	}
	return nil
}

// Check asks the master connection whether it runs (`ssh -O check`) and
// returns its process id.
func (s *SSH) Check(ctx context.Context) (int, error) {
	s.mu.Lock()
	dir := s.dir
	s.mu.Unlock()
	if dir == "" || s.opt.ControlPersist < 0 {
		return 0, fmt.Errorf("%s: no master connection", s.Name())
	}
	args := append(s.baseArgsDir(dir), "-O", "check", "--", s.target.Host)
	res, err := execRun(ctx, s.Name(), args, RunOptions{Timeout: 30 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("%s: no master connection: %w", s.Name(), err)
	}
	m := masterPID.FindSubmatch(append(res.Stdout, res.Stderr...))
	if m == nil {
		return 0, fmt.Errorf("%s: ssh -O check: unexpected answer %q", s.Name(), trimStderr(res.Stderr))
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid, nil
}

var masterPID = regexp.MustCompile(`pid=(\d+)`)

// ControlDir is the private directory holding the master connection's
// socket, "" before the first Run and after Close.
func (s *SSH) ControlDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

// prepare makes sure the control directory and a master connection exist,
// and returns the ssh arguments up to the destination.
func (s *SSH) prepare(ctx context.Context, argv []string, timeout time.Duration) ([]string, error) {
	if s.opt.ControlPersist < 0 {
		return s.baseArgs(), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		if _, err := os.Stat(s.dir); err != nil {
			// Removed behind ferry's back (a /tmp cleaner): make another.
			s.dir = ""
		}
	}
	if s.dir == "" {
		dir, err := makeControlDir()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		s.dir = dir
	}
	if s.masterSocket() == "" {
		if err := s.startMaster(ctx, argv, timeout); err != nil {
			return nil, err
		}
	}
	return s.baseArgs(), nil
}

// startMaster opens the shared connection: `ssh -N -f` with
// ControlMaster=yes returns once the connection is authenticated and leaves
// the master in the background. Starting it apart from any command keeps
// concurrent first commands from racing to become the master, and leaves
// ssh's own error messages alone on stderr.
func (s *SSH) startMaster(ctx context.Context, argv []string, timeout time.Duration) error {
	args := append(s.baseArgs(), "-o", "ControlMaster=yes", "-N", "-f", "--", s.target.Host)
	res, err := execRun(ctx, s.Name(), args, RunOptions{Timeout: -1})
	if err == nil {
		return nil
	}
	var cerr *CommandError
	if !errors.As(err, &cerr) {
		return err
	}
	cerr.Argv = argv
	switch {
	case cerr.TimedOut:
		cerr.Timeout = timeout
	case cerr.ExitCode < 0 && errors.Is(cerr.Err, ErrNotFound):
		cerr.Err = &ConnectError{Kind: "no ssh client", Detail: "ssh is not on PATH", Err: cerr.Err}
	case res != nil:
		cerr.ExitCode = -1
		cerr.Err = classifySSH(res.Stderr, true)
	}
	return cerr
}

// masterSocket returns the path of the master's socket in the control
// directory, "" when there is none. Only this host's master lives there.
func (s *SSH) masterSocket() string {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 && !strings.Contains(e.Name(), ".") {
			return filepath.Join(s.dir, e.Name())
		}
	}
	return ""
}

func (s *SSH) baseArgs() []string { return s.baseArgsDir(s.dir) }

// baseArgsDir is the ssh command line without the destination. ssh keeps the
// first value it gets for an option, so ferry's own come before the user's.
func (s *SSH) baseArgsDir(dir string) []string {
	a := []string{"ssh"}
	if s.opt.ConfigFile != "" {
		a = append(a, "-F", s.opt.ConfigFile)
	}
	if s.opt.IdentityFile != "" {
		a = append(a, "-i", s.opt.IdentityFile, "-o", "IdentitiesOnly=yes")
	}
	if s.opt.KnownHostsFile != "" {
		a = append(a, "-o", "UserKnownHostsFile="+sshOptionValue(s.opt.KnownHostsFile))
	}
	if s.opt.HostKeyPolicy != "" {
		a = append(a, "-o", "StrictHostKeyChecking="+strings.ToLower(s.opt.HostKeyPolicy))
	}
	ct := s.opt.ConnectTimeout
	if ct <= 0 {
		ct = defaultConnectTimeout
	}
	secs := int((ct + time.Second - 1) / time.Second)
	a = append(a,
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout="+strconv.Itoa(secs),
		// Keeps "Warning: Permanently added ..." and the like out of the
		// command's stderr; ssh's errors still show.
		"-o", "LogLevel=ERROR",
		// ferry needs no port forwardings; ones from the user's config
		// would only fail noisily when several connections are open.
		"-o", "ClearAllForwardings=yes",
	)
	if s.opt.ControlPersist < 0 || dir == "" {
		a = append(a, "-o", "ControlMaster=no", "-o", "ControlPath=none")
	} else {
		persist := s.opt.ControlPersist
		if persist == 0 {
			persist = defaultControlPersist
		}
		a = append(a,
			"-o", "ControlMaster=auto",
			"-o", "ControlPath="+sshOptionValue(strings.ReplaceAll(dir, "%", "%%")+"/%C"),
			"-o", "ControlPersist="+strconv.Itoa(int((persist+time.Second-1)/time.Second)),
		)
	}
	for _, o := range s.opt.Options {
		a = append(a, "-o", o)
	}
	// Defaults the Options above may change: notice a dead peer within a
	// minute, rather than hang the shared connection's commands until
	// their timeouts.
	a = append(a, "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
	if s.target.User != "" {
		a = append(a, "-l", s.target.User)
	}
	if s.target.Port != 0 {
		a = append(a, "-p", strconv.Itoa(s.target.Port))
	}
	return a
}

// sshOptionValue quotes a path for `ssh -o KEY=VALUE`, which splits
// unquoted values at spaces.
func sshOptionValue(v string) string {
	if strings.ContainsAny(v, " \t\"") {
		return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return v
}

// makeControlDir creates the private (0700) directory for the master's
// socket, short enough for a unix socket path.
func makeControlDir() (string, error) {
	base := os.TempDir()
	if len(base)+len("/ferry-ssh-1234567890") > maxControlDir || strings.ContainsAny(base, " \t\"%") {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "ferry-ssh-")
	if err != nil {
		return "", fmt.Errorf("create the ssh control directory: %w", err)
	}
	// MkdirTemp creates 0700 already; say it where it matters.
	if err := os.Chmod(dir, 0o700); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("create the ssh control directory: %w", err)
	}
	return dir, nil
}

// ErrConnect is wrapped by every *ConnectError.
var ErrConnect = errors.New("cannot connect")

// ConnectError is ssh failing to reach, authenticate or trust the remote
// host: the command did not run.
type ConnectError struct {
	// Kind is a short, stable description: "host key changed",
	// "authentication failed", "connection refused", ...
	Kind string
	// Detail is ssh's own message, trimmed to one line.
	Detail string
	hint   string
	Err    error
}

func (e *ConnectError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v: %s", ErrConnect, e.Kind)
	}
	return fmt.Sprintf("%v: %s (%s)", ErrConnect, e.Kind, e.Detail)
}

func (e *ConnectError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConnect, e.Err}
	}
	return []error{ErrConnect}
}

func (e *ConnectError) Hint() string {
	if e.hint != "" {
		return e.hint
	}
	if e.Kind == "no ssh client" {
		return "install the OpenSSH client (apt-get install openssh-client); ferry uses the system's ssh"
	}
	return "run the same connection with `ssh -v` to see why it fails"
}

// sshFailures are ssh's own messages, most specific first. Each pattern is
// one that a remote program is unlikely to print: ssh's "ssh: " prefix, its
// banners, its "(publickey,...)" lists.
var sshFailures = []struct {
	re   *regexp.Regexp
	kind string
	hint string
}{
	{regexp.MustCompile(`REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed`), "host key changed",
		"the host's key differs from the one in known_hosts: if the host was reinstalled or its key rotated, check the new fingerprint and replace the old entry (ssh-keygen -R HOST); otherwise someone may be intercepting the connection"},
	{regexp.MustCompile(`Host key verification failed|No \S+ host key is known for`), "host key not trusted",
		"the host's key is not in known_hosts and ssh runs in batch mode: check its fingerprint and add it (connect once with ssh, or ssh-keyscan HOST >> ~/.ssh/known_hosts), or allow accept-new for hosts never seen before"},
	{regexp.MustCompile(`Permission denied \([a-z0-9,@.-]+\)|Too many authentication failures`), "authentication failed",
		"the host refused every key ssh offered: check the user name, load the key into ssh-agent or set IdentityFile in ~/.ssh/config, and that the key is in the remote authorized_keys (ferry never prompts for passwords)"},
	{regexp.MustCompile(`Could not resolve hostname`), "cannot resolve host name",
		"check the host name, or add a Host entry with HostName in ~/.ssh/config"},
	{regexp.MustCompile(`ssh: connect to host .*: Connection refused`), "connection refused",
		"nothing listens on that port: check that sshd runs on the host and the port is right"},
	{regexp.MustCompile(`Connection timed out|Operation timed out|timed out during banner exchange`), "connection timed out",
		"the host did not answer in time: check that it is up, the address, and firewalls on the way"},
	{regexp.MustCompile(`No route to host|Network is unreachable`), "host unreachable",
		"there is no network route to the host: check the address and the network"},
	{regexp.MustCompile(`Session open refused by peer|open failed: administratively prohibited`), "session refused",
		"the host refused another session on the shared connection: raise MaxSessions in its sshd_config, or run fewer commands at once"},
	{regexp.MustCompile(`kex_exchange_identification|Connection closed by|Connection reset by|closed by remote host|client_loop: |mux_client_|Control socket connect`), "connection lost",
		"the connection was closed by the host or the network: check the host's sshd logs (journalctl -u ssh), MaxStartups, and the network"},
}

// sshKeygenRemove is the command ssh prints to forget a changed host key.
var sshKeygenRemove = regexp.MustCompile(`(?m)ssh-keygen -f .* -R .*$`)

// classifySSH turns the stderr of an ssh that exited 255 into a
// *ConnectError. Unless sure (ssh ran no command), it returns nil when the
// stderr holds none of ssh's own messages: the remote command then exited
// 255 by itself.
func classifySSH(stderr []byte, sure bool) *ConnectError {
	s := string(stderr)
	for _, f := range sshFailures {
		if f.re.MatchString(s) {
			ce := &ConnectError{Kind: f.kind, Detail: sshDetail(s, f.re), hint: f.hint}
			if m := sshKeygenRemove.FindString(s); m != "" && f.kind == "host key changed" {
				ce.hint += "; ssh suggests: " + m
			}
			return ce
		}
	}
	if !sure {
		return nil
	}
	return &ConnectError{Kind: "ssh failed", Detail: trimStderr(stderr)}
}

// sshDetail picks the most telling line of ssh's output: the last one that
// matched, else the last line.
func sshDetail(s string, re *regexp.Regexp) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	pick := lines[len(lines)-1]
	for _, l := range lines {
		if re.MatchString(l) {
			pick = l
		}
	}
	return trimStderr([]byte(strings.Trim(pick, "@ ")))
}
