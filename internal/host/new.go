package host

// New resolves a host spec (see ParseSpec) to a Host. It does not contact
// the host: an unreachable host shows up on the first Run or Open.
func New(spec string) (Host, error) {
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
	}
	return nil, &SpecError{Spec: spec, Reason: "ssh hosts are not available in this build"}
}
