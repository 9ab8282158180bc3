package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// maxJobErrors bounds the failed units a job record names.
const maxJobErrors = 50

// HandleCheck is the serverless controller: it acts on one check message.
// A check may act only when its Seq equals the job's Check: it first
// queues the next check (so a crash from here on cannot end the chain),
// then claims its number by compare-and-swap (so of duplicated checks
// exactly one acts, and the others' successors are stale in turn), then
// advances the job. A check of a finished job ends the chain.
func (e *Engine) HandleCheck(ctx context.Context, c events.Check) (*events.Job, error) {
	job, err := e.jobs.ReadJob(ctx, c.Job)
	if errors.Is(err, blob.ErrNotExist) {
		e.log.Warn("check of an unknown job (expired or never created); dropping it", "job", c.Job)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if job.State.Terminal() {
		e.cleanup(ctx, job)
		return job, nil
	}
	if c.Seq != job.Check {
		e.log.Debug("stale check; dropping it", "job", c.Job, "seq", c.Seq, "want", job.Check)
		return job, nil
	}
	if err := e.sendCheck(ctx, c.Job, c.Seq+1, e.opt.RecheckDelay); err != nil {
		return job, fmt.Errorf("pipeline: queuing the next check of %s: %w", c.Job, err)
	}
	// Whether this check claimed its number: a duplicate that lost the
	// race reads the record its winner stored, whose Check is Seq+1 too.
	claimed := false
	job, err = e.jobs.Update(ctx, c.Job, func(j *events.Job) error {
		claimed = false
		if j.Check != c.Seq || j.State.Terminal() {
			return ErrNoChange
		}
		j.Check, j.CheckedAt = c.Seq+1, e.jobs.Now().UTC()
		claimed = true
		return nil
	})
	if err != nil || !claimed || job.State.Terminal() {
		return job, err
	}
	return e.Advance(ctx, c.Job)
}

// Advance looks at a job's stored state once and moves it on as far as it
// can: it re-sends an open phase that was not fully queued, fails the job
// when a task failed for good or the job ran past its timeout, opens the
// next phase once the open one is complete, and finishes the job after
// its last phase. Every step is a compare-and-swap of the job record
// followed by work that is safe to repeat, so Advance may run any number
// of times, concurrently, and be cut short anywhere.
func (e *Engine) Advance(ctx context.Context, id string) (*events.Job, error) {
	job, err := e.jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	now := e.jobs.Now()
	switch {
	case job.State.Terminal():
		e.cleanup(ctx, job)
		return job, nil
	case now.Sub(job.CreatedAt) > e.opt.JobTimeout:
		return e.fail(ctx, id, events.JobError{Task: "timeout", Unit: "job", Message: fmt.Sprintf(
			"not finished %s after it was created (state %s, phase %d); giving up", now.Sub(job.CreatedAt).Round(time.Second), job.State, job.Phase)})
	case job.State == events.StatePlanned:
		if job.Planning.Live(now) || now.Sub(job.UpdatedAt) < e.opt.PlanLease {
			return job, nil
		}
		return e.fail(ctx, id, events.JobError{Task: "plan", Unit: "plan",
			Message: "planning was interrupted and never resumed; start the job again"})
	}
	if nFailed, failures, err := e.jobs.Failures(ctx, id, maxJobErrors); err != nil {
		return job, err
	} else if nFailed > 0 {
		errs := make([]events.JobError, 0, len(failures))
		for _, f := range failures {
			errs = append(errs, events.JobError{Task: f.Task, Unit: f.Unit, Message: f.Error})
		}
		e.log.Error("job failed", "job", id, "failedTasks", nFailed)
		return e.fail(ctx, id, errs...)
	}
	if job.State == events.StateRunning && job.Phase < len(job.PhaseTasks) {
		if job.QueuedPhase < job.Phase {
			if job, err = e.dispatch(ctx, job, nil); err != nil {
				return job, err
			}
		}
		done, err := e.jobs.CountDone(ctx, id, job.Phase)
		if err != nil || done < job.PhaseTasks[job.Phase] {
			return job, err
		}
		if next := firstPhase(job.PhaseTasks, job.Phase+1); next < len(job.PhaseTasks) {
			return e.openPhase(ctx, job, next)
		}
	}
	return e.finish(ctx, job)
}

// openPhase closes the job's open phase and opens phase next: the job
// record says so (durably, which fences late wipes of the closed phase)
// before any task of the next phase is sent.
func (e *Engine) openPhase(ctx context.Context, job *events.Job, next int) (*events.Job, error) {
	cur := job.Phase
	lease := &events.Lease{Owner: newToken(), Until: e.jobs.Now().Add(e.opt.DispatchLease).UTC()}
	job, err := e.jobs.Update(ctx, job.ID, func(j *events.Job) error {
		if j.State != events.StateRunning || j.Phase != cur {
			return ErrNoChange
		}
		j.Phase, j.Dispatching = next, lease
		return nil
	})
	if err != nil || !holds(job.Dispatching, lease) {
		return job, err
	}
	e.log.Info("phase opened", "job", job.ID, "phase", next, "tasks", job.PhaseTasks[next])
	return e.dispatch(ctx, job, lease)
}

// finish runs the job kind's finish step under the finishing lease and
// records the job done. The lease is renewed while the step runs; a step
// whose lease was taken over (its holder presumed dead) cannot record its
// outcome, and the deterministic finish step of its successor writes the
// same bytes. Staging is deleted only once done is stored.
func (e *Engine) finish(ctx context.Context, job *events.Job) (*events.Job, error) {
	fin := e.domains[job.Kind].Finisher
	lease := &events.Lease{Owner: newToken(), Until: e.jobs.Now().Add(e.opt.FinishLease).UTC()}
	if fin != nil {
		var err error
		job, err = e.jobs.Update(ctx, job.ID, func(j *events.Job) error {
			if j.State.Terminal() || j.Finishing.Live(e.jobs.Now()) {
				return ErrNoChange
			}
			j.State, j.Finishing = events.StateAssembling, lease
			return nil
		})
		if err != nil || !holds(job.Finishing, lease) {
			return job, err
		}
	}
	var out Outcome
	var ferr error
	if fin != nil {
		stop := e.renew(ctx, job.ID, lease)
		out, ferr = fin.Finish(ctx, job)
		if serr := stop(); ferr == nil {
			ferr = serr
		}
	}
	if ferr != nil {
		if IsPermanent(ferr) {
			return e.fail(ctx, job.ID, events.JobError{Task: "finish", Unit: "archive", Message: ferr.Error()})
		}
		// Let the next check try again at once rather than after the lease.
		_, _ = e.jobs.Update(context.WithoutCancel(ctx), job.ID, func(j *events.Job) error {
			if !holds(j.Finishing, lease) {
				return ErrNoChange
			}
			j.Finishing = nil
			return nil
		})
		return job, fmt.Errorf("pipeline: finishing job %s: %w", job.ID, ferr)
	}
	sum, warnings, omitted, err := e.summarize(ctx, job)
	if err != nil {
		return job, err
	}
	done, err := e.jobs.Update(ctx, job.ID, func(j *events.Job) error {
		switch {
		case j.State.Terminal():
			return ErrNoChange
		case fin != nil && !holds(j.Finishing, lease):
			return fmt.Errorf("pipeline: job %s: lost the finishing lease; its successor finishes the job", job.ID)
		case fin == nil && (j.State != events.StateRunning || j.Phase != job.Phase):
			return ErrNoChange
		}
		j.State, j.Finishing = events.StateDone, nil
		j.Archive, j.Manifest, j.Snapshot = out.Archive, out.Manifest, out.Snapshot
		sum.ArchiveSize = out.ArchiveSize
		j.Summary = sum
		j.AddWarnings(warnings...)
		j.AddWarnings(out.Warnings...)
		j.WarningsOmitted += omitted
		return nil
	})
	if err != nil || done.State != events.StateDone {
		return done, err
	}
	e.log.Info("job done", "job", job.ID, "archive", done.Archive, "snapshot", done.Snapshot)
	e.cleanup(ctx, done)
	return done, nil
}

// renew keeps the finishing lease alive while the finish step runs; stop
// ends the renewals and reports a lease that was lost meanwhile.
func (e *Engine) renew(ctx context.Context, id string, lease *events.Lease) (stop func() error) {
	every := e.opt.FinishLease / 3
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				result <- nil
				return
			case <-t.C:
			}
			_, err := e.jobs.Update(ctx, id, func(j *events.Job) error {
				if !holds(j.Finishing, lease) {
					return fmt.Errorf("pipeline: job %s: the finishing lease was taken over", id)
				}
				j.Finishing.Until = e.jobs.Now().Add(e.opt.FinishLease).UTC()
				return nil
			})
			if err != nil && ctx.Err() == nil {
				e.log.Warn("could not renew the finishing lease", "job", id, "err", err)
			}
		}
	}()
	return func() error { close(done); return <-result }
}

// summarize reads every finished task's outcome once, at the end: the
// job's figures and its tasks' warnings (bounded).
func (e *Engine) summarize(ctx context.Context, job *events.Job) (*events.Summary, []string, int, error) {
	s := &events.Summary{}
	if job.Summary != nil {
		*s = *job.Summary
	}
	s.TasksDone, s.Rows, s.Objects, s.Bytes, s.Skipped, s.Deleted = 0, 0, 0, 0, 0, 0
	var warnings []string
	omitted := 0
	err := e.jobs.EachDone(ctx, job.ID, func(st events.TaskStatus) error {
		s.TasksDone++
		s.Rows += st.Rows
		s.Objects += st.Objects
		s.Bytes += st.Bytes
		s.Skipped += st.Skipped
		s.Deleted += st.Deleted
		ws := st.Warnings
		if st.Warning {
			ws = append([]string{st.Error}, ws...)
		}
		for _, w := range ws {
			if len(warnings) < events.MaxWarnings {
				warnings = append(warnings, st.Unit+": "+w)
			} else {
				omitted++
			}
		}
		omitted += st.WarningsOmitted
		return nil
	})
	return s, warnings, omitted, err
}

// fail records a job as failed, naming the failed units; a job already
// finished keeps its state.
func (e *Engine) fail(ctx context.Context, id string, errs ...events.JobError) (*events.Job, error) {
	ctx = context.WithoutCancel(ctx)
	done := 0
	_ = e.jobs.Store.List(ctx, e.jobs.key(id, "done")+"/", func(blob.Info) error { done++; return nil })
	nFailed, _, _ := e.jobs.Failures(ctx, id, 0)
	return e.jobs.Update(ctx, id, func(j *events.Job) error {
		if j.State.Terminal() {
			return ErrNoChange
		}
		j.State, j.Errors, j.Planning, j.Finishing, j.Dispatching = events.StateFailed, errs, nil, nil, nil
		if j.Summary == nil {
			j.Summary = &events.Summary{}
		}
		j.Summary.TasksDone, j.Summary.TasksFailed = done, nFailed
		return nil
	})
}

// cleanup deletes the staging area of a job that is done (a failed job
// keeps it, for --resume). It is best effort: a later check, or the
// bucket's lifecycle rule, deletes what is left.
func (e *Engine) cleanup(ctx context.Context, job *events.Job) {
	if job.State != events.StateDone {
		return
	}
	if err := e.jobs.DeleteStaging(ctx, job.ID); err != nil {
		e.log.Warn("could not delete the staging area of a finished job", "job", job.ID, "err", err)
	}
}
