package pipeline_test

import (
	"slices"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// TestWatchdog: one round revives a running job whose checks stopped
// (a check with its current sequence number, at once), fails a job past
// its timeout and one whose planning was abandoned, and leaves finished
// jobs and healthy ones alone.
func TestWatchdog(t *testing.T) {
	ctx := testContext(t)
	opt := pipeline.Options{StallAfter: 5 * time.Minute, PlanLease: 15 * time.Minute, JobTimeout: 20 * time.Hour}
	e := newEnv(t, setup{phases: []int{2}, opt: opt})

	e.start(ctx, t, "stalled")
	if _, err := e.jobs.Update(ctx, "stalled", func(j *events.Job) error { j.Check, j.CheckedAt = 3, e.clock.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	e.createJob(ctx, t, events.Job{ID: "abandoned", State: events.StatePlanned, QueuedPhase: -1,
		Planning: &events.Lease{Owner: "gone", Until: e.clock.Now().Add(opt.PlanLease)}})
	e.createJob(ctx, t, events.Job{ID: "timedout", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1,
		CreatedAt: e.clock.Now().Add(-opt.JobTimeout - time.Minute), CheckedAt: e.clock.Now()})
	finished := []*events.Job{
		e.createJob(ctx, t, events.Job{ID: "done", State: events.StateDone, CreatedAt: epoch.Add(-48 * time.Hour)}),
		e.createJob(ctx, t, events.Job{ID: "failed", State: events.StateFailed, CreatedAt: epoch.Add(-48 * time.Hour)}),
	}
	e.clock.Advance(opt.PlanLease + time.Minute) // past StallAfter and the planning lease
	e.start(ctx, t, "healthy")
	e.clock.Advance(time.Hour)
	checks(ctx, t, e.control) // the jobs' own first checks
	if _, err := e.jobs.Update(ctx, "healthy", func(j *events.Job) error { j.CheckedAt = e.clock.Now(); return nil }); err != nil {
		t.Fatal(err)
	}

	rep, err := e.eng.Watchdog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rep.Failed)
	if rep.Jobs != 4 || !slices.Equal(rep.Revived, []string{"stalled"}) || !slices.Equal(rep.Failed, []string{"abandoned", "timedout"}) {
		t.Fatalf("report %+v; want 4 unfinished jobs, stalled revived, abandoned and timedout failed", rep)
	}
	if got := checks(ctx, t, e.control); !slices.Equal(got, []events.Check{{Job: "stalled", Seq: 3}}) {
		t.Fatalf("checks sent %v; want one for the stalled job with its current sequence number, visible at once", got)
	}
	for id, task := range map[string]string{"abandoned": "plan", "timedout": "timeout"} {
		if job := e.job(ctx, t, id); job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0].Task != task {
			t.Errorf("%s: %s %+v", id, job.State, job.Errors)
		}
	}
	for _, before := range finished {
		if after := e.job(ctx, t, before.ID); after.Revision != before.Revision || after.State != before.State {
			t.Errorf("%s was changed: %+v", before.ID, after)
		}
	}
	if job := e.job(ctx, t, "healthy"); job.State != events.StateRunning {
		t.Errorf("healthy job %s", job.State)
	}

	// The revived chain acts.
	if job, err := e.eng.HandleCheck(ctx, events.Check{Job: "stalled", Seq: 3}); err != nil || job.Check != 4 {
		t.Fatalf("revived check: %+v %v", job, err)
	}
}
