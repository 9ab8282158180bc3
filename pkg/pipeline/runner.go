package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
)

// Runner drives one job to its end in-process, the way the serverless
// runtime does with Lambda: Concurrency goroutines take tasks from the
// queue and run them through the engine's Worker, settling each delivery
// with the same Decide/Settle; whenever the queue drains (or a task fails
// for good) the runner advances the job (Engine.Advance), which opens the
// next phase, re-sends what is missing or finishes the job.
type Runner struct {
	Engine *Engine
	// Queue is the engine's task queue, and Depth how many messages it
	// holds that are not acked yet (visible, in flight or delayed): the
	// in-process queue knows (mem.Queue.Len).
	Queue       Queue
	Depth       func() int
	Concurrency int
	// Tick is how often the job is looked at while tasks are pending
	// (default 250 ms); StallTicks how many looks at a drained queue that
	// change nothing make the run give up (default 20).
	Tick       time.Duration
	StallTicks int
	Log        *slog.Logger
}

// Run returns the job's final record. A job that fails returns its record
// and an error naming the failed units.
func (r *Runner) Run(ctx context.Context, jobID string) (*events.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var failedTask atomic.Bool
	g, gctx := errgroup.WithContext(ctx)
	for range max(r.Concurrency, 1) {
		g.Go(func() error { return r.work(gctx, &failedTask, signal) })
	}
	// The controller stops with the workers: a worker that cannot settle
	// a message ends the run (resume picks it up).
	job, runErr := r.control(gctx, jobID, wake, &failedTask)
	cancel()
	if err := g.Wait(); err != nil && (runErr == nil || errors.Is(runErr, context.Canceled)) {
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

// maxReceiveFailures ends a worker whose queue keeps failing.
const maxReceiveFailures = 10

// work is one worker goroutine. A failed receive is tried again; a
// delivery that cannot be settled (acked, nacked or re-sent) ends the run,
// since its message would otherwise stay hidden and the job wait.
func (r *Runner) work(ctx context.Context, failedTask *atomic.Bool, signal func()) error {
	failures := 0
	for {
		ds, err := r.Queue.Receive(ctx, 1, 100*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if failures++; failures > maxReceiveFailures {
				return fmt.Errorf("pipeline: receiving tasks: %w", err)
			}
			logger(r.Log).Warn("receiving tasks failed; trying again", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(r.Engine.opt.Backoff.Delay(failures)):
			}
			continue
		}
		failures = 0
		for _, d := range ds {
			dec, err := r.deliver(ctx, d)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("pipeline: settling a task message: %w", err)
			}
			if dec.Action == DeadLetter {
				failedTask.Store(true)
				signal() // let the controller look now: fail fast
			}
		}
		if len(ds) > 0 && r.Depth() == 0 {
			signal()
		}
	}
}

// deliver processes one message and settles it.
func (r *Runner) deliver(ctx context.Context, d Delivery) (Decision, error) {
	env, err := events.Decode(d.Body)
	if err == nil && env.Task == nil {
		err = fmt.Errorf("%w: a check message on the task queue", events.ErrBadMessage)
	}
	var dec Decision
	if err != nil {
		logger(r.Log).Error("malformed task message; dropping it", "err", err)
		dec = Decision{Action: DeadLetter}
	} else {
		perr := r.Engine.Worker.Process(ctx, *env.Task, d.Attempt)
		dec = Decide(ctx, perr, d.Attempt, r.Engine.opt.MaxAttempts, r.Engine.opt.Backoff)
	}
	if ctx.Err() != nil {
		return dec, nil // the run is ending; the message stays in the (in-memory) queue
	}
	_, err = Settle(ctx, r.Queue, d, dec, r.Queue.Ack)
	return dec, err
}

// lookEvery is how many ticks pass between looks at a job whose queue
// has not drained: completion is decided from stored state, not from the
// queue, so a duplicate that lingers cannot hold a finished job back.
const lookEvery = 20

// control advances the job whenever the queue drains or a task fails, and
// every lookEvery ticks regardless, until the job ends.
func (r *Runner) control(ctx context.Context, id string, wake <-chan struct{}, failedTask *atomic.Bool) (*events.Job, error) {
	tick := time.NewTicker(cmp(r.Tick, 250*time.Millisecond))
	defer tick.Stop()
	stall, failures, idle := 0, 0, 0
	var job *events.Job
	for {
		select {
		case <-ctx.Done():
			return job, ctx.Err()
		case <-wake:
		case <-tick.C:
		}
		failed := failedTask.Swap(false)
		if r.Depth() > 0 && !failed {
			stall = 0
			if idle++; idle < lookEvery {
				continue
			}
		}
		idle = 0
		after, err := r.Engine.Advance(ctx, id)
		if err != nil {
			// A failed step is repeated on the next look (every step is
			// safe to repeat); only one that keeps failing ends the run.
			if failures++; IsPermanent(err) || failures > cmpInt(r.StallTicks, 20) || ctx.Err() != nil {
				return job, err
			}
			logger(r.Log).Warn("advancing the job failed; trying again", "job", id, "err", err)
			continue
		}
		job, failures = after, 0
		if job.State.Terminal() {
			return job, nil
		}
		if r.Depth() == 0 {
			// Drained, advanced, not finished and nothing new queued: only
			// possible if stored state is inconsistent. Give retries a few
			// looks, then report instead of hanging.
			if stall++; stall > cmpInt(r.StallTicks, 20) {
				return job, fmt.Errorf("pipeline: job %s stalled in state %s (phase %d) with no queued work", id, job.State, job.Phase)
			}
		}
	}
}

func cmp(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func cmpInt(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}
