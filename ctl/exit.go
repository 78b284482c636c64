package ctl

import (
	"errors"
	"fmt"
)

// Exit codes, the same as etcdctl's, so that scripts testing $? behave the
// same.
const (
	ExitSuccess       = 0
	ExitError         = 1
	ExitBadConnection = 2
	ExitInvalidInput  = 3 // for txn, watch
	ExitBadFeature    = 4 // output format not supported by the command
	ExitInterrupted   = 5
	ExitBadArgs       = 128
)

// exitError is an error with the exit code keelctl must end with. The message
// is printed as "Error: <msg>" on standard error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode gives err the exit code; a nil err stays nil.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// badArgs is the error of a command given the wrong arguments.
func badArgs(format string, a ...any) error {
	return &exitError{code: ExitBadArgs, err: fmt.Errorf(format, a...)}
}

// exitCode is the exit code err asks for: ExitError unless it carries one.
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return ExitError
}
