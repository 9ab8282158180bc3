package backup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/edgevault/edgevault/events"
)

// Progress is a job's task outcomes, read from stored state.
type Progress struct {
	Done, Failed, Retrying int
	// DonePerPhase counts finished tasks per restore phase.
	DonePerPhase map[int]int
	// Failures holds the failed tasks (the first maxFailures of them).
	Failures []events.TaskStatus
	Warnings []string
	Rows     int64
	Objects  int64
	Bytes    int64
}

const maxFailures = 50

// ReadProgress lists a job's task statuses.
func (j *Jobs) ReadProgress(ctx context.Context, job string) (*Progress, error) {
	p := &Progress{DonePerPhase: map[int]int{}}
	err := j.EachStatus(ctx, job, func(st events.TaskStatus) error {
		switch st.State {
		case events.TaskDone:
			p.Done++
			p.DonePerPhase[st.Phase]++
			p.Rows += st.Rows
			p.Objects += st.Objects
			p.Bytes += st.Bytes
			if st.Warning {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s", st.Unit, st.Error))
			}
			for _, w := range st.Warnings {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s", st.Unit, w))
			}
		case events.TaskFailed:
			p.Failed++
			if len(p.Failures) < maxFailures {
				p.Failures = append(p.Failures, st)
			}
		case events.TaskRetrying:
			p.Retrying++
		}
		return nil
	})
	return p, err
}

// Advancer moves a job of one kind forward from its stored state: the
// backup assembler builds the archive once every part exists, the restore
// coordinator opens the next phase once the current one is complete. It
// changes job in place; the Controller stores it.
type Advancer interface {
	Advance(ctx context.Context, job *events.Job, p *Progress) error
}

// Controller handles check messages: it fails a job as soon as a task has
// failed for good, lets the job's Advancer move it on, and re-queues a
// delayed check until the job is finished.
type Controller struct {
	Jobs      *Jobs
	Advancers map[events.JobKind]Advancer
	// Control receives the delayed re-checks; nil when the caller drives
	// checks itself (the embedded runner).
	Control      Queue
	RecheckDelay time.Duration
	Log          *slog.Logger
}

// Check looks at a job once and returns its record afterwards.
func (c *Controller) Check(ctx context.Context, id string) (*events.Job, error) {
	job, err := c.Jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.State.Terminal() {
		return job, nil
	}
	p, err := c.Jobs.ReadProgress(ctx, id)
	if err != nil {
		return job, err
	}
	if p.Failed > 0 {
		job.State = events.StateFailed
		job.Errors = job.Errors[:0]
		for _, f := range p.Failures {
			job.Errors = append(job.Errors, events.JobError{Task: f.Task, Unit: f.Unit, Message: f.Error})
		}
		job.Summary = summarize(job, p)
		job.Warnings = append(job.Warnings, p.Warnings...)
		c.logger().Error("job failed", "job", id, "failedTasks", p.Failed)
		return job, c.Jobs.WriteJob(ctx, job)
	}
	adv, ok := c.Advancers[job.Kind]
	if !ok {
		return job, fmt.Errorf("backup: no advancer for %s jobs", job.Kind)
	}
	before := *job
	if err := adv.Advance(ctx, job, p); err != nil {
		return job, err
	}
	if job.State != before.State || job.Phase != before.Phase {
		job.Summary = summarize(job, p)
		if job.State.Terminal() {
			job.Warnings = append(job.Warnings, p.Warnings...)
		}
		if err := c.Jobs.WriteJob(ctx, job); err != nil {
			return job, err
		}
	}
	if !job.State.Terminal() && c.Control != nil {
		if err := c.Recheck(ctx, id); err != nil {
			return job, err
		}
	}
	return job, nil
}

// Recheck queues a delayed check of a job.
func (c *Controller) Recheck(ctx context.Context, id string) error {
	body, err := events.Envelope{Check: &events.Check{Job: id}}.Encode()
	if err != nil {
		return err
	}
	return c.Control.Send(ctx, Message{Body: body, Delay: c.RecheckDelay})
}

func summarize(job *events.Job, p *Progress) *events.Summary {
	s := &events.Summary{}
	if job.Summary != nil {
		*s = *job.Summary
	}
	s.TasksDone, s.TasksFailed = p.Done, p.Failed
	s.Rows, s.Objects, s.Bytes = p.Rows, p.Objects, p.Bytes
	return s
}

func (c *Controller) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}
