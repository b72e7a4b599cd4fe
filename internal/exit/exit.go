// Package exit defines ferry's process exit codes and the errors that carry
// them, so that every command maps failures to codes in one place.
package exit

import (
	"errors"
	"fmt"
)

// The exit codes of every ferry command. They are part of the CLI contract:
// scripts and CI systems branch on them.
const (
	OK           = 0 // success
	Failure      = 1 // an error: ferry could not do what was asked
	Usage        = 2 // bad flags, arguments or host specs
	Incompatible = 3 // hosts compared and blocking findings found
	Migration    = 4 // a checkpoint, restore, migration or soak failed
	Partial      = 5 // a bug-report bundle was written but is incomplete
)

// Statuses is the EXIT STATUS section shared by every command's help.
const Statuses = `EXIT STATUS
  0  success
  1  error (what failed is printed, followed by hint: lines)
  2  usage: bad flags, arguments or host specs
  3  incompatible hosts: blocking findings
  4  migration, checkpoint, restore or soak failure
  5  partial bug-report bundle written`

// Error wraps an error with an exit code and hints that tell the user what to
// do next.
type Error struct {
	Code  int
	Err   error
	Hints []string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New wraps err with an exit code and hints.
func New(code int, err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err, Hints: hints}
}

// Usagef is a usage error (exit 2) with one hint.
func Usagef(hint, format string, args ...any) error {
	return New(Usage, fmt.Errorf(format, args...), hint)
}

// WithHint keeps err's exit code (1 when it has none) and adds hints.
func WithHint(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: CodeOf(err), Err: err, Hints: hints}
}

// Hinter is implemented by errors that know what the user should do next.
// Packages below cmd implement it without importing this package.
type Hinter interface {
	Hint() string
}

// CodeOf returns the exit code for err: the outermost *Error's code, 0 for
// nil and 1 otherwise.
func CodeOf(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}

// HintsOf collects the hints of every error in err's chain, outermost first,
// without duplicates.
func HintsOf(err error) []string {
	var hints []string
	seen := map[string]bool{}
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			hints = append(hints, h)
		}
	}
	walk(err, func(e error) {
		switch v := e.(type) {
		case *Error:
			for _, h := range v.Hints {
				add(h)
			}
		case Hinter:
			add(v.Hint())
		}
	})
	return hints
}

func walk(err error, f func(error)) {
	for err != nil {
		f(err)
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, f)
			}
			return
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return
		}
	}
}
