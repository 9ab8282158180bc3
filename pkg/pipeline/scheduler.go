package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Start creates, plans and launches a job. A repeated request with the
// same JobID (a redelivered trigger) returns the existing job instead of
// starting a second one, and re-sends whatever the first request may not
// have sent (the first check, the first phase's tasks).
func (e *Engine) Start(ctx context.Context, req events.StartRequest) (*events.Job, error) {
	job, err := e.Prepare(ctx, req)
	if err != nil || job.State.Terminal() {
		return job, err
	}
	return e.Launch(ctx, job.ID)
}

// Prepare creates a job record and writes its plan without queuing
// anything, so a caller can show the plan and ask before Launch. A job
// that was already planned is returned as it is; one whose planning was
// interrupted is planned again from scratch.
func (e *Engine) Prepare(ctx context.Context, req events.StartRequest) (*events.Job, error) {
	now := e.jobs.Now().UTC()
	id := req.JobID
	if id == "" {
		id = e.newID(req.Kind, now)
	}
	if !ValidJobID(id) {
		return nil, Permanent(fmt.Errorf("pipeline: invalid job id %q", id))
	}
	dom, ok := e.domains[req.Kind]
	if !ok || dom.Planner == nil {
		return nil, Permanent(fmt.Errorf("pipeline: unknown job kind %q", req.Kind))
	}
	trigger := req.Trigger
	if trigger == "" {
		trigger = events.TriggerCLI
	}
	owner := newToken()
	lease := &events.Lease{Owner: owner, Until: now.Add(e.opt.PlanLease)}
	job := &events.Job{
		ID: id, Kind: req.Kind, State: events.StatePlanned, Trigger: trigger, RequestedBy: req.RequestedBy,
		Target: e.target, Source: e.source, Options: req.Options,
		CreatedAt: now, Started: now.Truncate(time.Millisecond), QueuedPhase: -1, Planning: lease,
	}
	err := e.jobs.CreateJob(ctx, job)
	if errors.Is(err, blob.ErrExist) {
		if job, err = e.retakePlanning(ctx, id, lease); err != nil || !holds(job.Planning, lease) {
			return job, err
		}
		// An interrupted first attempt may have stopped before the
		// record's index marker, or left half a plan behind.
		if err = e.jobs.writeIndex(ctx, job); err == nil {
			err = e.jobs.DeletePlan(ctx, id)
		}
	}
	if err != nil {
		// The record may exist with this invocation's lease (a create
		// whose answer was lost): let a retry take it at once.
		e.releasePlanning(ctx, id, owner)
		return nil, err
	}
	if err := e.jobs.AcquireTarget(ctx, job); err != nil {
		if errors.Is(err, ErrTargetBusy) {
			// Refused before planning reads anything of the target.
			return e.planFailed(ctx, job, owner, err)
		}
		// The store failed: the retry takes the lock (taking it again is
		// a no-op).
		e.releasePlanning(ctx, id, owner)
		return job, err
	}
	if err := dom.Planner.Plan(ctx, job); err != nil {
		if IsPermanent(err) || ctx.Err() != nil {
			// Retrying cannot help: a bad archive, a refused request, or a
			// planning that does not fit the time the invocation has.
			return e.planFailed(ctx, job, owner, err)
		}
		e.releasePlanning(ctx, id, owner)
		return job, fmt.Errorf("pipeline: planning job %s: %w", id, err)
	}
	planned := *job
	return e.jobs.Update(ctx, id, func(j *events.Job) error {
		if j.Planning == nil || j.Planning.Owner != owner {
			return fmt.Errorf("pipeline: job %s: planning took longer than its lease and another invocation took over", id)
		}
		phaseTasks := planned.PhaseTasks
		if phaseTasks == nil {
			phaseTasks = []int{planned.Tasks}
		}
		// A plan without tasks opens its last (empty) phase, which is
		// complete at once.
		j.Tasks, j.PhaseTasks = planned.Tasks, phaseTasks
		j.Phase = min(firstPhase(phaseTasks, 0), max(len(phaseTasks)-1, 0))
		j.Summary, j.Planning = planned.Summary, nil
		// A planner records the job's mode in its options (a backup
		// that ends in a repository snapshot).
		j.Options = planned.Options
		j.AddWarnings(planned.Warnings...)
		j.WarningsOmitted += planned.WarningsOmitted
		return nil
	})
}

// retakePlanning handles a start request for a job that exists: jobs
// whose planner is gone (an expired planning lease) are planned again by
// this invocation, which then holds the lease; others, planned completely
// (no lease) or past planning, are returned as they are.
func (e *Engine) retakePlanning(ctx context.Context, id string, lease *events.Lease) (*events.Job, error) {
	job, err := e.jobs.Update(ctx, id, func(j *events.Job) error {
		if j.State != events.StatePlanned || planComplete(j) || j.Planning.Live(e.jobs.Now()) {
			return ErrNoChange
		}
		j.Planning = lease
		return nil
	})
	if err != nil {
		return nil, err
	}
	if job.State == events.StatePlanned && !planComplete(job) && !holds(job.Planning, lease) {
		return nil, fmt.Errorf("pipeline: job %s is being planned by another invocation (until %s)", id, job.Planning.Until.Format(time.RFC3339))
	}
	return job, nil
}

// planComplete reports whether a job's plan was committed: a plan always
// has at least one phase (PhaseTasks is set only by the commit).
func planComplete(j *events.Job) bool { return j.PhaseTasks != nil }

// releasePlanning gives up this invocation's planning lease (best effort;
// otherwise it expires).
func (e *Engine) releasePlanning(ctx context.Context, id, owner string) {
	_, _ = e.jobs.Update(context.WithoutCancel(ctx), id, func(j *events.Job) error {
		if j.Planning == nil || j.Planning.Owner != owner {
			return ErrNoChange
		}
		j.Planning = nil
		return nil
	})
}

// planFailed records a planning failure in the job. A planning that was
// cut short by its context (a deadline) says so: it did not fail on its
// own.
func (e *Engine) planFailed(ctx context.Context, job *events.Job, owner string, cause error) (*events.Job, error) {
	msg := cause.Error()
	if ctx.Err() != nil {
		msg = fmt.Sprintf("planning did not finish in the time it had (%v): %s", ctx.Err(), msg)
	}
	failed, err := e.jobs.Update(context.WithoutCancel(ctx), job.ID, func(j *events.Job) error {
		if j.Planning == nil || j.Planning.Owner != owner {
			return ErrNoChange // another invocation took over; its outcome stands
		}
		j.State, j.Planning = events.StateFailed, nil
		j.Errors = []events.JobError{{Task: "plan", Unit: "plan", Message: msg}}
		j.AddWarnings(job.Warnings...)
		return nil
	})
	if err != nil {
		return job, errors.Join(cause, err)
	}
	return failed, cause
}

// Launch marks a prepared job running and queues its first check (when
// checks travel by queue) and its open phase. Calling it again re-sends
// whatever may be missing; it never changes a finished job.
func (e *Engine) Launch(ctx context.Context, id string) (*events.Job, error) {
	job, err := e.jobs.Update(ctx, id, func(j *events.Job) error {
		if j.State != events.StatePlanned || !planComplete(j) {
			return ErrNoChange
		}
		j.State = events.StateRunning
		return nil
	})
	if err != nil {
		return job, err
	}
	switch job.State {
	case events.StatePlanned:
		return job, fmt.Errorf("pipeline: job %s is still being planned", id)
	case events.StateRunning:
	default:
		return job, nil
	}
	if e.control != nil {
		// The check goes first: if this invocation dies while sending
		// tasks, the check finds the phase not fully queued and re-sends it.
		if err := e.sendCheck(ctx, id, job.Check, e.opt.RecheckDelay); err != nil {
			return job, fmt.Errorf("pipeline: queuing the first check of %s: %w", id, err)
		}
	}
	return e.dispatch(ctx, job, nil)
}

// Resume restarts an interrupted or failed job: tasks that failed get
// another chance, finished ones are kept, the open phase is queued again
// (without its finished tasks) and any lease a dead process held is
// dropped; a job whose planning was interrupted is planned again. The
// caller asserts nothing else is running the job.
func (e *Engine) Resume(ctx context.Context, id string) (*events.Job, error) {
	job, err := e.jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	switch job.State {
	case events.StateDone:
		return job, fmt.Errorf("pipeline: job %s is already done (%s)", id, job.Archive)
	case events.StatePlanned:
		// Planning was interrupted: plan again from scratch, taking over
		// the dead planner's lease.
		if _, err := e.jobs.Update(ctx, id, func(j *events.Job) error { j.Planning = nil; return nil }); err != nil {
			return job, err
		}
		return e.Start(ctx, events.StartRequest{JobID: id, Kind: job.Kind, Trigger: job.Trigger, Options: job.Options})
	}
	if err := e.jobs.AcquireTarget(ctx, job); err != nil {
		return job, err
	}
	if err := e.jobs.ClearFailures(ctx, id); err != nil {
		return job, err
	}
	job, err = e.jobs.Update(ctx, id, func(j *events.Job) error {
		j.State, j.Errors, j.Finishing, j.Dispatching = events.StateRunning, nil, nil, nil
		j.QueuedPhase = min(j.QueuedPhase, j.Phase-1)
		return nil
	})
	if err != nil {
		return job, err
	}
	if e.control != nil {
		if err := e.sendCheck(ctx, id, job.Check, e.opt.RecheckDelay); err != nil {
			return job, err
		}
	}
	return e.dispatch(ctx, job, nil)
}

// dispatch sends the tasks of the job's open phase that are not done yet,
// unless the phase is already queued or another invocation is sending it
// (a live Dispatching lease). lease is the caller's claim when it opened
// the phase itself (nil: claim it here). Once every task is sent the
// phase is recorded as queued; a sender that fails releases its claim so
// the next check sends again at once.
func (e *Engine) dispatch(ctx context.Context, job *events.Job, lease *events.Lease) (*events.Job, error) {
	phase, id := job.Phase, job.ID
	if lease == nil {
		lease = &events.Lease{Owner: newToken(), Until: e.jobs.Now().Add(e.opt.DispatchLease).UTC()}
		var err error
		job, err = e.jobs.Update(ctx, id, func(j *events.Job) error {
			if j.State != events.StateRunning || j.Phase != phase || j.QueuedPhase >= phase || j.Dispatching.Live(e.jobs.Now()) {
				return ErrNoChange
			}
			j.Dispatching = lease
			return nil
		})
		if err != nil || !holds(job.Dispatching, lease) {
			return job, err
		}
	}
	sent, err := e.sendPhase(ctx, job)
	after, uerr := e.jobs.Update(context.WithoutCancel(ctx), id, func(j *events.Job) error {
		if !holds(j.Dispatching, lease) {
			return ErrNoChange
		}
		j.Dispatching = nil
		if err == nil && j.Phase == phase {
			j.QueuedPhase = max(j.QueuedPhase, phase)
		}
		return nil
	})
	if err != nil {
		return job, fmt.Errorf("pipeline: queuing phase %d of job %s (%d tasks sent): %w", phase, id, sent, err)
	}
	if uerr != nil {
		return job, uerr
	}
	e.log.Debug("phase queued", "job", id, "phase", phase, "tasks", sent)
	return after, nil
}

// holds reports whether l is the lease mine.
func holds(l, mine *events.Lease) bool { return l != nil && mine != nil && l.Owner == mine.Owner }

// sendPhase sends the tasks of the open phase that have no outcome yet,
// in batches of ten (SQS's limit), SendBatches batches at a time. Outcomes
// are listed alongside the plan (both are in task id order), so nothing is
// held in memory but the batches in flight. Long tasks (Task.First) are
// sent first, in a pass of their own that ends before the others are
// sent, each looked up for an outcome on its own.
func (e *Engine) sendPhase(ctx context.Context, job *events.Job) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first, err := e.sendTasks(ctx, job, func(t events.Task) (bool, error) {
		if !t.First {
			return false, nil
		}
		_, finished, err := e.jobs.Done(ctx, t)
		return !finished, err
	})
	if err != nil {
		return first, err
	}
	done := make(chan string, 256)
	listErr := make(chan error, 1)
	go func() {
		defer close(done)
		listErr <- e.jobs.Store.List(ctx, e.jobs.donePrefix(job.ID, job.Phase), func(info blob.Info) error {
			name := info.Key[len(e.jobs.donePrefix(job.ID, job.Phase)):]
			select {
			case done <- name[:len(name)-len(".json")]:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	next, more := <-done
	rest, err := e.sendTasks(ctx, job, func(t events.Task) (bool, error) {
		if t.First {
			return false, nil
		}
		for more && next < t.ID {
			next, more = <-done
		}
		return !more || next != t.ID, nil // else finished already
	})
	cancel()
	for range done {
	}
	if lerr := <-listErr; err == nil && lerr != nil && !errors.Is(lerr, context.Canceled) {
		err = lerr
	}
	return first + rest, err
}

// sendTasks sends the open phase's tasks that send says to, in plan
// order, and waits for every batch.
func (e *Engine) sendTasks(ctx context.Context, job *events.Job, send func(events.Task) (bool, error)) (int, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opt.SendBatches)
	var batch []Message
	sent := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		msgs := batch
		batch = nil
		g.Go(func() error { return e.tasks.Send(gctx, msgs...) })
	}
	err := e.jobs.EachTask(gctx, job.ID, func(t events.Task) error {
		if t.Phase != job.Phase {
			return nil
		}
		if ok, err := send(t); err != nil || !ok {
			return err
		}
		body, err := events.Envelope{Task: &t}.Encode()
		if err != nil {
			return err
		}
		batch = append(batch, Message{Body: body})
		sent++
		if len(batch) == 10 {
			flush()
		}
		return gctx.Err()
	})
	if err == nil {
		flush()
	}
	// A failed send cancels gctx, so the plan loop then fails with
	// context.Canceled: the send's error is the cause.
	if werr := g.Wait(); werr != nil {
		err = werr
	}
	return sent, err
}

// firstPhase is the first phase from p on that has tasks, or
// len(phaseTasks) when none has.
func firstPhase(phaseTasks []int, p int) int {
	for p < len(phaseTasks) && phaseTasks[p] == 0 {
		p++
	}
	return p
}
