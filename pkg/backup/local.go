package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/events"
	"golang.org/x/sync/errgroup"
)

// CountingQueue wraps a Queue and counts messages sent but not yet acked,
// which is how the embedded runner knows the queue has drained.
type CountingQueue struct {
	Queue
	pending atomic.Int64
}

// Send implements Queue.
func (q *CountingQueue) Send(ctx context.Context, msgs ...Message) error {
	q.pending.Add(int64(len(msgs)))
	if err := q.Queue.Send(ctx, msgs...); err != nil {
		q.pending.Add(-int64(len(msgs)))
		return err
	}
	return nil
}

// Ack implements Queue.
func (q *CountingQueue) Ack(ctx context.Context, d Delivery) error {
	if err := q.Queue.Ack(ctx, d); err != nil {
		return err
	}
	q.pending.Add(-1)
	return nil
}

// Pending is how many sent messages are not acked yet.
func (q *CountingQueue) Pending() int64 { return q.pending.Load() }

// Runner drives one job to its end in-process, the way the serverless
// runtime does with Lambda: Concurrency workers take tasks from the queue
// and run them through the same Worker; whenever the queue drains (or a
// task fails for good) the same Controller checks the job, which opens
// the next restore phase or assembles the archive.
type Runner struct {
	Queue       *CountingQueue
	Worker      *Worker
	Controller  *Controller
	Concurrency int
	// RetryDelay is the base delay before a failed task is redelivered
	// (doubled per attempt).
	RetryDelay time.Duration
	Log        *slog.Logger
}

// Run returns the job's final record. A job that fails returns its record
// and an error naming the failed units.
func (r *Runner) Run(ctx context.Context, jobID string) (*events.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := max(r.Concurrency, 1)
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var (
		mu      sync.Mutex
		lastErr error
	)
	g, gctx := errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error {
			for {
				ds, err := r.Queue.Receive(gctx, 1, 100*time.Millisecond)
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return err
				}
				for _, d := range ds {
					if perr := r.deliver(gctx, d); perr != nil {
						mu.Lock()
						lastErr = perr
						mu.Unlock()
						signal() // let the controller look now: fail fast
					}
				}
				if len(ds) > 0 && r.Queue.Pending() == 0 {
					signal()
				}
			}
		})
	}

	var job *events.Job
	var runErr error
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	idleChecks := 0
loop:
	for {
		select {
		case <-ctx.Done():
			runErr = ctx.Err()
			break loop
		case <-wake:
		case <-tick.C:
		}
		mu.Lock()
		failedTask := lastErr
		lastErr = nil
		mu.Unlock()
		if r.Queue.Pending() > 0 && failedTask == nil {
			idleChecks = 0
			continue
		}
		var err error
		job, err = r.Controller.Check(ctx, jobID)
		if err != nil {
			runErr = err
			break loop
		}
		if job.State.Terminal() {
			break loop
		}
		if r.Queue.Pending() == 0 {
			// Drained, checked, not finished and nothing new queued: only
			// possible if stored state is inconsistent. Give retries a few
			// ticks, then report instead of hanging.
			if idleChecks++; idleChecks > 20 {
				runErr = fmt.Errorf("backup: job %s stalled in state %s (phase %d) with no queued work", jobID, job.State, job.Phase)
				break loop
			}
		}
	}
	cancel()
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return job, runErr
	}
	if job.State == events.StateFailed {
		return job, JobFailedError(job)
	}
	return job, nil
}

// deliver processes one message; the returned error is a task failure the
// controller should see promptly.
func (r *Runner) deliver(ctx context.Context, d Delivery) error {
	env, err := events.Decode(d.Body)
	if err != nil || env.Task == nil {
		// Checks are driven by Run itself; malformed messages are dropped.
		return r.Queue.Ack(ctx, d)
	}
	perr := r.Worker.Process(ctx, *env.Task, d.Attempt)
	switch {
	case perr == nil:
		return r.Queue.Ack(ctx, d)
	case ctx.Err() != nil:
		return nil
	case errors.Is(perr, ErrTaskFailed), IsPermanent(perr), d.Attempt >= r.Worker.maxAttempts():
		// Recorded as failed; there is no dead-letter queue in-process.
		if err := r.Queue.Ack(ctx, d); err != nil {
			return err
		}
		return perr
	default:
		base := r.RetryDelay
		if base <= 0 {
			base = 200 * time.Millisecond
		}
		return r.nack(ctx, d, base<<min(d.Attempt-1, 6))
	}
}

func (r *Runner) nack(ctx context.Context, d Delivery, delay time.Duration) error {
	if err := r.Queue.Nack(ctx, d, delay); err != nil {
		return err
	}
	return nil
}

// JobFailedError describes a failed job by its failed units.
func JobFailedError(job *events.Job) error {
	if len(job.Errors) == 0 {
		return fmt.Errorf("job %s failed", job.ID)
	}
	msg := fmt.Sprintf("job %s failed: %s", job.ID, job.Errors[0])
	if len(job.Errors) > 1 {
		msg += fmt.Sprintf(" (and %d more failed units)", len(job.Errors)-1)
	}
	return errors.New(msg)
}
