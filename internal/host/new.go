package host

// Option changes how New builds a host.
type Option func(*newConfig)

type newConfig struct {
	ssh SSHOptions
}

// WithSSHOptions sets how ssh:// hosts invoke ssh.
func WithSSHOptions(o SSHOptions) Option {
	return func(c *newConfig) { c.ssh = o }
}

// New resolves a host spec (see ParseSpec) to a Host. It does not contact
// the host: an unreachable host shows up on the first Run or Open. An SSH
// host holds a shared connection once used: close it (io.Closer) when done.
func New(spec string, opts ...Option) (Host, error) {
	var c newConfig
	for _, o := range opts {
		o(&c)
	}
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch {
	case s.Local:
		return Local{}, nil
	case s.Testbed != "":
		return &Netns{Label: "testbed:" + s.Testbed, Netns: TestbedNetnsPrefix + s.Testbed}, nil
	case s.Dir != "":
		return &Dir{Root: s.Dir}, nil
	case s.SSH != nil:
		return NewSSH(*s.SSH, c.ssh)
	}
	return nil, &SpecError{Spec: spec, Reason: "not a known host form"}
}
