package restore

import (
	"context"
	"log/slog"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/backup"
)

// Coordinator moves a restore through its phases: once every task of the
// open phase is done it records the next non-empty phase in the job
// record (closing the previous one, which fences late wipes) and only
// then queues that phase's tasks. After the last phase the job is done and
// its staging area is deleted.
type Coordinator struct {
	Jobs  *backup.Jobs
	Tasks backup.Queue
	Log   *slog.Logger
}

var _ backup.Advancer = (*Coordinator)(nil)

// Advance implements backup.Advancer.
func (c *Coordinator) Advance(ctx context.Context, job *events.Job, p *backup.Progress) error {
	if job.State != events.StateRunning {
		return nil
	}
	want := 0
	if job.Phase < len(job.PhaseTasks) {
		want = job.PhaseTasks[job.Phase]
	}
	if p.DonePerPhase[job.Phase] < want {
		return nil
	}
	next := job.Phase + 1
	for next < len(job.PhaseTasks) && job.PhaseTasks[next] == 0 {
		next++
	}
	if next >= len(job.PhaseTasks) {
		job.State = events.StateDone
		if err := c.Jobs.DeleteStaging(ctx, job.ID); err != nil && c.Log != nil {
			c.Log.Warn("could not delete restore staging", "job", job.ID, "err", err)
		}
		return nil
	}
	job.Phase = next
	// Durably close the previous phase before anything of the next runs.
	if err := c.Jobs.WriteJob(ctx, job); err != nil {
		return err
	}
	if c.Log != nil {
		c.Log.Info("restore phase opened", "job", job.ID, "phase", PhaseName(next), "tasks", job.PhaseTasks[next])
	}
	return c.Jobs.EnqueuePhase(ctx, c.Tasks, job, false)
}
