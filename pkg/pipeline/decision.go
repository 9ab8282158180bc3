package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/edgevault/edgevault/events"
)

// Action is what happens to a delivered message after it was handled.
type Action int

const (
	// Ack deletes the message: its work is done (or was never needed).
	Ack Action = iota
	// Retry makes the message visible again after Delay; the queue counts
	// the attempt, and after MaxAttempts it is dead-lettered.
	Retry
	// DeadLetter gives up on the message: its task's failure is recorded
	// and the queue moves it to its dead-letter queue (in-process: drops
	// it).
	DeadLetter
	// Requeue sends a copy of the message after Delay and deletes the
	// original, so waiting (for a lease another delivery holds) does not
	// use up attempts.
	Requeue
)

func (a Action) String() string {
	return [...]string{"ack", "retry", "dead-letter", "requeue"}[a]
}

// Decision is the one delivery decision both runtimes apply.
type Decision struct {
	Action Action
	Delay  time.Duration
}

// Backoff spaces the attempts of a failing message: base doubled per
// attempt, capped at limit.
type Backoff struct {
	Base, Limit time.Duration
}

// Delay is the visibility delay before attempt+1.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Base << min(max(attempt-1, 0), 20)
	if b.Limit > 0 {
		d = min(d, b.Limit)
	}
	return d
}

// Decide maps the outcome of one delivery of a task to what happens to its
// message. ctx is the context the task ran under: a task cut short by it
// (a Lambda's soft deadline, Ctrl-C) is retried at once, it did not fail.
func Decide(ctx context.Context, err error, attempt, maxAttempts int, b Backoff) Decision {
	switch {
	case err == nil:
		return Decision{Action: Ack}
	case errors.Is(err, events.ErrBadMessage):
		return Decision{Action: DeadLetter}
	case errors.Is(err, ErrBusy):
		return Decision{Action: Requeue, Delay: b.Base}
	case errors.Is(err, ErrTaskFailed), IsPermanent(err):
		return Decision{Action: DeadLetter}
	case ctx.Err() != nil:
		return Decision{Action: Retry}
	case attempt >= maxAttempts:
		return Decision{Action: DeadLetter}
	}
	return Decision{Action: Retry, Delay: b.Delay(attempt)}
}

// Settle carries out d on a delivered message of q and reports whether the
// message counts as handled. ack deletes it: the embedded runner passes
// q.Ack, a Lambda SQS handler nil (the event source deletes every record
// the handler does not report as failed). A dead-lettered message is
// reported as not handled so SQS counts the receive towards its
// dead-letter queue; in-process it is acked (there is none).
func Settle(ctx context.Context, q Queue, msg Delivery, d Decision, ack func(context.Context, Delivery) error) (handled bool, err error) {
	done := func() (bool, error) {
		if ack == nil {
			return true, nil
		}
		return true, ack(ctx, msg)
	}
	switch d.Action {
	case Ack:
		return done()
	case Requeue:
		if err := q.Send(ctx, Message{Body: msg.Body, Delay: d.Delay}); err != nil {
			return false, q.Nack(ctx, msg, d.Delay)
		}
		return done()
	case DeadLetter:
		if ack != nil {
			return true, ack(ctx, msg)
		}
		return false, q.Nack(ctx, msg, 0)
	}
	return false, q.Nack(ctx, msg, d.Delay)
}
