package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// runner drives e's jobs in-process, looking at the job often so tests
// end quickly.
func (e *env) runner() *pipeline.Runner {
	return &pipeline.Runner{Engine: e.eng, Queue: e.taskQ, Depth: e.tasks.Len, Concurrency: 4, Tick: 10 * time.Millisecond, StallTicks: 5}
}

// embedded is the engine setup of the embedded runtime: no control queue,
// retries after a millisecond.
func embedded(phases ...int) setup {
	return setup{phases: phases, noControl: true, finisher: true,
		opt: pipeline.Options{MaxAttempts: 3, Backoff: pipeline.Backoff{Base: time.Millisecond, Limit: 10 * time.Millisecond}}}
}

// TestRunnerDrivesAJobToDone: a job of three phases, run by four workers,
// with a task that fails once on the way, ends done; every task ran in
// its own phase, phases in order, and once (twice for the one retried).
func TestRunnerDrivesAJobToDone(t *testing.T) {
	ctx := testContext(t)
	phases := []int{5, 12, 3}
	e := newEnv(t, embedded(phases...))
	flaky := pipeline.TaskID(9, fakeKind)
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if u.Task.ID == flaky && e.fake.callsOf(flaky) == 1 {
			return pipeline.Result{}, errTransient
		}
		return pipeline.Result{Rows: 2}, nil
	}
	e.start(ctx, t, "j")
	job, err := e.runner().Run(ctx, "j")
	if err != nil || job.State != events.StateDone || job.Summary.TasksDone != 20 || job.Summary.Rows != 40 || e.fin.calls.Load() != 1 {
		t.Fatalf("run: %+v %v", job, err)
	}
	for _, p := range []int{0, 1, 2} {
		for _, id := range phaseIDs(phases, p) {
			if want := map[bool]int{true: 2, false: 1}[id == flaky]; e.fake.callsOf(id) != want {
				t.Errorf("task %s ran %d times, want %d", id, e.fake.callsOf(id), want)
			}
		}
	}
	last := 0
	for i, tk := range e.fake.order {
		if e.fake.seenPhase[i] != tk.Phase || tk.Phase < last {
			t.Fatalf("task %s of phase %d ran with phase %d open, after a task of phase %d", tk.ID, tk.Phase, e.fake.seenPhase[i], last)
		}
		last = tk.Phase
	}
	if e.tasks.Len() != 0 {
		t.Fatalf("%d messages left", e.tasks.Len())
	}
}

// TestRunnerFailsPromptlyOnAFailedTask: a task that fails for good fails
// the job at once, naming its unit, while other tasks are still running.
func TestRunnerFailsPromptlyOnAFailedTask(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, embedded(6))
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if u.Task.Unit == "unit-2" {
			return pipeline.Result{}, pipeline.Permanent(errors.New("access denied"))
		}
		<-ctx.Done() // the others never finish on their own
		return pipeline.Result{}, ctx.Err()
	}
	e.start(ctx, t, "j")
	start := time.Now()
	job, err := e.runner().Run(ctx, "j")
	if err == nil || !strings.Contains(err.Error(), "unit-2: access denied") {
		t.Fatalf("run: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second { // the others wait for the run to end: fast, not a hang
		t.Fatalf("the job failed after %s", took)
	}
	if job == nil || job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0].Unit != "unit-2" {
		t.Fatalf("job %+v", job)
	}
	if stored := e.job(ctx, t, "j"); stored.State != events.StateFailed || e.fin.calls.Load() != 0 {
		t.Fatalf("stored %s, %d finishes", stored.State, e.fin.calls.Load())
	}
}

// TestRunnerRetriesAFailingStep: an Advance that fails (a store error) is
// tried again on the next look instead of ending the run.
func TestRunnerRetriesAFailingStep(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, embedded(4))
	e.start(ctx, t, "j")
	e.store.Inject(blobtest.Fault{Op: blobtest.OpList, Match: func(k string) bool { return strings.HasSuffix(k, "j/failed/") }, Times: 2})
	job, err := e.runner().Run(ctx, "j")
	if err != nil || job.State != events.StateDone {
		t.Fatalf("run: %+v %v", job, err)
	}
	if e.store.Fired() != 2 {
		t.Fatalf("%d faults fired, want 2", e.store.Fired())
	}
}

// TestRunnerDetectsAStall: a job whose stored state can never complete
// (its record counts a task the plan does not hold) ends the run with an
// error saying so, instead of hanging.
func TestRunnerDetectsAStall(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, embedded(3))
	e.start(ctx, t, "j")
	if _, err := e.jobs.Update(ctx, "j", func(j *events.Job) error { j.PhaseTasks[0]++; return nil }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	job, err := e.runner().Run(ctx, "j")
	if err == nil || !strings.Contains(err.Error(), "job j stalled in state running (phase 0) with no queued work") {
		t.Fatalf("run: %+v %v", job, err)
	}
	if took := time.Since(start); took > 20*time.Second || e.fake.totalCalls() != 3 { // a stall ends the run, not the test timeout
		t.Fatalf("stall reported after %s and %d task runs", took, e.fake.totalCalls())
	}
}
