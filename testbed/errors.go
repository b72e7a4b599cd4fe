package testbed

import (
	"errors"
	"fmt"
)

// hintError carries a hint for the user (cmd prints it as a hint: line).
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }

// UsageError is a request that cannot work whatever the machine: a bad
// name, size or option (cmd exits 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ErrDown is returned when the testbed is not up.
var ErrDown = errors.New("the testbed is not up")

func errDown() error { return withHint(ErrDown, "start it with `ferry testbed up`") }
