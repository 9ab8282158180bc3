package pipeline

import (
	"errors"
)

// permanentError marks failures that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (bad input, a refused
// request, a misconfiguration): a task fails on its first attempt, a job
// step fails the job. Every unmarked error is transient.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// warningError marks failures of steps that must not fail the job (the
// _users_public resync, secrets): the task is recorded as done with a
// warning.
type warningError struct{ err error }

func (e *warningError) Error() string { return e.err.Error() }
func (e *warningError) Unwrap() error { return e.err }

// AsWarning marks err as a warning-only failure.
func AsWarning(err error) error {
	if err == nil {
		return nil
	}
	return &warningError{err}
}

func isWarning(err error) bool {
	var w *warningError
	return errors.As(err, &w)
}

// ErrTaskFailed is returned for a delivery of a task that has already
// failed for good: the delivery is dead-lettered.
var ErrTaskFailed = errors.New("pipeline: task failed permanently")

// ErrBusy is returned when another delivery of a run-once task holds its
// lease: the message is sent again later, without using up an attempt.
var ErrBusy = errors.New("pipeline: task is being run by another delivery")
