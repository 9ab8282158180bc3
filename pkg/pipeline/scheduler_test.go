package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// TestPrepareConcurrentlyPlansOnce: two start requests for one job at the
// same time plan it once; the second is told the job is being planned.
func TestPrepareConcurrentlyPlansOnce(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{3}})
	release := make(chan struct{})
	e.fake.plan = func(ctx context.Context, _ *events.Job) error {
		<-release
		return nil
	}
	req := events.StartRequest{JobID: "j", Kind: events.KindBackup}
	type result struct {
		job *events.Job
		err error
	}
	first := make(chan result, 1)
	go func() { job, err := e.eng.Prepare(ctx, req); first <- result{job, err} }()
	eventually(t, "the first planning", func() bool { return e.fake.planned.Load() == 1 })

	if job, err := e.eng.Prepare(ctx, req); err == nil || !strings.Contains(err.Error(), "being planned by another invocation") {
		t.Fatalf("second prepare: %+v %v", job, err)
	}
	close(release)
	r := <-first
	if r.err != nil || r.job.State != events.StatePlanned || r.job.Tasks != 3 || r.job.Planning != nil || r.job.QueuedPhase != -1 {
		t.Fatalf("first prepare: %+v %v", r.job, r.err)
	}
	if e.tasks.Len() != 0 || e.control.Len() != 0 || e.fake.planned.Load() != 1 {
		t.Fatalf("prepare queued something or planned %d times", e.fake.planned.Load())
	}
}

// TestStartOfAPreparedJob: a start request for a job that was planned
// completely but not launched (a retried start whose first attempt died
// after planning) launches the job without planning it again; a start
// request for a running job re-sends nothing that is queued already.
func TestStartOfAPreparedJob(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{3}})
	req := events.StartRequest{JobID: "j", Kind: events.KindBackup}
	prepared, err := e.eng.Prepare(ctx, req)
	if err != nil || prepared.State != events.StatePlanned {
		t.Fatalf("prepare: %+v %v", prepared, err)
	}
	job, err := e.eng.Start(ctx, req)
	if err != nil || job.State != events.StateRunning || e.fake.planned.Load() != 1 || e.tasks.Len() != 3 {
		t.Fatalf("start after prepare: %+v %v, planned %d times, %d tasks queued", job, err, e.fake.planned.Load(), e.tasks.Len())
	}
	job, err = e.eng.Start(ctx, req)
	if err != nil || job.State != events.StateRunning || e.fake.planned.Load() != 1 || e.tasks.Len() != 3 {
		t.Fatalf("repeated start: %+v %v, planned %d times, %d tasks queued", job, err, e.fake.planned.Load(), e.tasks.Len())
	}
}

// TestPrepareRetakesAnAbandonedPlan: a planning whose lease expired is
// planned again from scratch by the next start request; the old planner,
// should it come back, changes nothing.
func TestPrepareRetakesAnAbandonedPlan(t *testing.T) {
	ctx := testContext(t)
	const lease = 10 * time.Minute
	e := newEnv(t, setup{phases: []int{2, 1}, opt: pipeline.Options{PlanLease: lease}})
	stuck := make(chan struct{})
	e.fake.plan = func(ctx context.Context, _ *events.Job) error {
		if e.fake.planned.Load() == 1 {
			<-stuck
		}
		return nil
	}
	req := events.StartRequest{JobID: "j", Kind: events.KindBackup}
	old := make(chan error, 1)
	go func() { _, err := e.eng.Prepare(ctx, req); old <- err }()
	eventually(t, "the first planning", func() bool { return e.fake.planned.Load() == 1 })
	if _, err := e.eng.Prepare(ctx, req); err == nil {
		t.Fatal("a live planning was taken over")
	}

	e.clock.Advance(lease + time.Minute)
	job, err := e.eng.Prepare(ctx, req)
	if err != nil || job.State != events.StatePlanned || job.Planning != nil || job.Tasks != 3 || e.fake.planned.Load() != 2 {
		t.Fatalf("retaken planning: %+v %v (planned %d times)", job, err, e.fake.planned.Load())
	}
	close(stuck)
	if err := <-old; err == nil {
		t.Fatal("the abandoned planner reported success")
	}
	after := e.job(ctx, t, "j")
	if after.State != events.StatePlanned || after.Planning != nil || after.Tasks != 3 || len(after.Errors) != 0 || after.Revision != job.Revision {
		t.Fatalf("the abandoned planner changed the record: %+v", after)
	}
	if job, err := e.eng.Launch(ctx, "j"); err != nil || job.State != events.StateRunning || len(drain(ctx, t, e.tasks)) != 2 {
		t.Fatalf("launch: %+v %v", job, err)
	}
}

// TestPlannerErrorFailsTheJob: a planner's permanent error fails the
// job, naming it, and a retried start request finds the failed job.
func TestPlannerErrorFailsTheJob(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{1}})
	e.fake.plan = func(context.Context, *events.Job) error {
		return pipeline.Permanent(errors.New("no DO enumeration source"))
	}
	req := events.StartRequest{JobID: "j", Kind: events.KindBackup}
	job, err := e.eng.Start(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "no DO enumeration source") {
		t.Fatalf("start: %v", err)
	}
	want := events.JobError{Task: "plan", Unit: "plan", Message: "no DO enumeration source"}
	if job == nil || job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0] != want || job.Planning != nil {
		t.Fatalf("job %+v", job)
	}
	if again, err := e.eng.Start(ctx, req); err != nil || again.State != events.StateFailed || e.fake.planned.Load() != 1 {
		t.Fatalf("retried start: %+v %v (planned %d times)", again, err, e.fake.planned.Load())
	}
	if e.tasks.Len() != 0 || e.control.Len() != 0 {
		t.Fatal("a failed planning queued work")
	}
}

// TestTransientPlannerErrorIsRetried: a planner's transient error (a
// store or network failure) leaves the job planned with no lease, and a
// retried start request plans it again and can launch it.
func TestTransientPlannerErrorIsRetried(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{2}})
	e.fake.plan = func(context.Context, *events.Job) error {
		if e.fake.planned.Load() == 1 {
			return errors.New("connection reset")
		}
		return nil
	}
	req := events.StartRequest{JobID: "j", Kind: events.KindBackup}
	if _, err := e.eng.Start(ctx, req); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("start: %v", err)
	}
	if job := e.job(ctx, t, "j"); job.State != events.StatePlanned || job.Planning != nil || len(job.Errors) != 0 {
		t.Fatalf("after a transient planning error: %+v", job)
	}
	job, err := e.eng.Start(ctx, req)
	if err != nil || job.State != events.StateRunning || job.Tasks != 2 || e.fake.planned.Load() != 2 {
		t.Fatalf("retried start: %+v %v (planned %d times)", job, err, e.fake.planned.Load())
	}
}

// TestPlanningCutShort: a planning ended by its context (a Lambda's soft
// deadline) fails the job saying it ran out of time.
func TestPlanningCutShort(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{1}})
	e.fake.plan = func(ctx context.Context, _ *events.Job) error {
		<-ctx.Done()
		return fmt.Errorf("listing DOs: %w", ctx.Err())
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	job, err := e.eng.Prepare(short, events.StartRequest{JobID: "j", Kind: events.KindBackup})
	if err == nil || job == nil || job.State != events.StateFailed || len(job.Errors) != 1 {
		t.Fatalf("prepare: %+v %v", job, err)
	}
	if msg := job.Errors[0].Message; !strings.HasPrefix(msg, "planning did not finish in the time it had (context deadline exceeded)") || !strings.Contains(msg, "listing DOs") {
		t.Fatalf("message %q", msg)
	}
	if stored := e.job(ctx, t, "j"); stored.State != events.StateFailed {
		t.Fatalf("stored %s", stored.State)
	}
}

func TestPrepareRefusesBadRequests(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{1}})
	for _, req := range []events.StartRequest{
		{JobID: "../x", Kind: events.KindBackup},
		{JobID: "index", Kind: events.KindBackup},
		{JobID: "j", Kind: events.KindRestore}, // no restore domain here
	} {
		if _, err := e.eng.Prepare(ctx, req); !pipeline.IsPermanent(err) {
			t.Errorf("%+v: %v, want a permanent error", req, err)
		}
	}
	if e.fake.planned.Load() != 0 {
		t.Fatal("a refused request was planned")
	}
}
