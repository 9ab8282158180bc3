package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/edgevault/edgevault/events"
)

// WatchdogReport is what one watchdog round did.
type WatchdogReport struct {
	Jobs    int      `json:"jobs"`    // unfinished jobs looked at
	Revived []string `json:"revived"` // jobs whose checks had stopped: a check was sent
	Failed  []string `json:"failed"`  // jobs failed for running too long or an abandoned plan
}

// Watchdog makes sure no job waits forever for a check that will never
// come. It looks at every unfinished job: one past its timeout, or whose
// planning was abandoned, is failed (naming why); one whose checks have
// not run for StallAfter gets a check with its current sequence number
// (if the old chain is alive after all, one of the two dies at its next
// claim). The serverless stack runs it on a schedule; the embedded runner
// does not need it (it checks the job itself until it ends).
func (e *Engine) Watchdog(ctx context.Context) (WatchdogReport, error) {
	r := WatchdogReport{Revived: []string{}, Failed: []string{}}
	now := e.jobs.Now()
	var errs []error
	err := e.jobs.ListJobs(ctx, func(job *events.Job) error {
		if job.State.Terminal() {
			return nil
		}
		r.Jobs++
		timedOut := now.Sub(job.CreatedAt) > e.opt.JobTimeout
		abandoned := job.State == events.StatePlanned && !job.Planning.Live(now) && now.Sub(job.UpdatedAt) > e.opt.PlanLease
		switch {
		case timedOut || abandoned:
			after, err := e.Advance(ctx, job.ID)
			if err != nil {
				errs = append(errs, err)
			} else if after.State == events.StateFailed {
				r.Failed = append(r.Failed, job.ID)
			}
		case job.State != events.StatePlanned && e.control != nil && now.Sub(lastActivity(job)) > e.opt.StallAfter:
			e.log.Warn("job checks stopped; sending a check", "job", job.ID, "seq", job.Check, "lastCheck", job.CheckedAt)
			if err := e.sendCheck(ctx, job.ID, job.Check, 0); err != nil {
				errs = append(errs, err)
			} else {
				r.Revived = append(r.Revived, job.ID)
			}
		}
		return nil
	})
	return r, errors.Join(append(errs, err)...)
}

func lastActivity(job *events.Job) time.Time {
	if job.CheckedAt.After(job.UpdatedAt) {
		return job.CheckedAt
	}
	return job.UpdatedAt
}
