package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

// advances counts the Advance calls that got past the job record: each
// lists the job's failures once.
func (e *env) advances(job string) int { return e.calls(blobtest.OpList, job+"/failed/") }

// TestHandleCheck: a check acts only with the job's current sequence
// number: it queues its successor, claims its number, advances the job.
// Stale checks are dropped; of duplicated checks exactly one acts; a
// check of a finished job ends the chain.
func TestHandleCheck(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{2}, finisher: true, opt: pipeline.Options{RecheckDelay: time.Minute}})
	e.start(ctx, t, "j")
	if got := checks(ctx, t, e.control); len(got) != 0 {
		t.Fatalf("first check visible before its delay: %v", got)
	}
	e.clock.Advance(time.Minute)
	if got := checks(ctx, t, e.control); !slices.Equal(got, []events.Check{{Job: "j", Seq: 0}}) {
		t.Fatalf("start queued checks %v, want seq 0", got)
	}

	job, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: 0})
	if err != nil || job.Check != 1 || job.State != events.StateRunning || e.advances("j") != 1 {
		t.Fatalf("check 0: %+v %v, %d advances", job, err, e.advances("j"))
	}
	e.clock.Advance(time.Minute)
	if got := checks(ctx, t, e.control); !slices.Equal(got, []events.Check{{Job: "j", Seq: 1}}) {
		t.Fatalf("check 0 queued %v, want its successor", got)
	}

	// Stale: a duplicate of the check that acted, and one from nowhere.
	rev := e.job(ctx, t, "j").Revision
	for _, seq := range []int{0, 7} {
		if _, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Minute)
	if got := checks(ctx, t, e.control); len(got) != 0 || e.advances("j") != 1 || e.job(ctx, t, "j").Revision != rev {
		t.Fatalf("stale checks queued %v, advanced %d times, revision %d->%d; want no effect", got, e.advances("j"), rev, e.job(ctx, t, "j").Revision)
	}

	// Every task done; the same check delivered eight times at once: one
	// claims it and finishes the job.
	e.run(ctx, t, drain(ctx, t, e.tasks))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	job = e.job(ctx, t, "j")
	if job.State != events.StateDone || job.Check != 2 || e.advances("j") != 2 || e.fin.calls.Load() != 1 {
		t.Fatalf("after 8 duplicates: state %s check %d, %d advances, %d finishes; want done by exactly one",
			job.State, job.Check, e.advances("j")-1, e.fin.calls.Load())
	}
	e.clock.Advance(time.Minute)
	next := checks(ctx, t, e.control)
	if len(next) == 0 || len(next) > 8 || slices.ContainsFunc(next, func(c events.Check) bool { return c.Seq != 2 }) {
		t.Fatalf("duplicates queued %v; want successors with seq 2", next)
	}
	// The chain ends at the finished job.
	for _, c := range next {
		if job, err := e.eng.HandleCheck(ctx, c); err != nil || job.State != events.StateDone {
			t.Fatalf("check of a done job: %+v %v", job, err)
		}
	}
	e.clock.Advance(time.Hour)
	if n := e.control.Len(); n != 0 {
		t.Fatalf("checks of a done job queued %d more", n)
	}
	if job, err := e.eng.HandleCheck(ctx, events.Check{Job: "gone", Seq: 0}); job != nil || err != nil || e.control.Len() != 0 {
		t.Fatalf("check of an unknown job: %+v %v", job, err)
	}
}

// TestHandleCheckQueuesItsSuccessorFirst: a check that cannot queue its
// successor does nothing (its retry will); one that fails after queuing
// it leaves the chain alive.
func TestHandleCheckQueuesItsSuccessorFirst(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{1}})
	e.start(ctx, t, "j")
	e.clock.Advance(time.Hour)
	checks(ctx, t, e.control)

	e.ctrlQ.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1})
	if _, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: 0}); !errors.Is(err, queuetest.ErrInjected) {
		t.Fatalf("check whose successor cannot be queued: %v", err)
	}
	if job := e.job(ctx, t, "j"); job.Check != 0 || e.advances("j") != 0 {
		t.Fatalf("it claimed (check %d) or advanced (%d)", job.Check, e.advances("j"))
	}

	// The claim fails: the successor is queued already.
	e.store.Inject(blobtest.Fault{Op: blobtest.OpReplace, Match: func(k string) bool { return k == e.jobs.JobKey("j") }, Nth: 1})
	if _, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: 0}); !errors.Is(err, blobtest.ErrInjected) {
		t.Fatalf("check whose claim fails: %v", err)
	}
	e.clock.Advance(time.Hour)
	if got := checks(ctx, t, e.control); !slices.Equal(got, []events.Check{{Job: "j", Seq: 1}}) || e.job(ctx, t, "j").Check != 0 {
		t.Fatalf("after a failed claim: queued %v, check %d", got, e.job(ctx, t, "j").Check)
	}
	// Its retry acts.
	if job, err := e.eng.HandleCheck(ctx, events.Check{Job: "j", Seq: 0}); err != nil || job.Check != 1 || e.advances("j") != 1 {
		t.Fatalf("retried check: %+v %v", job, err)
	}
}

// TestFinishFailureReleasesTheLease: a finish step that fails frees the
// finishing lease, so the next look retries at once and succeeds.
func TestFinishFailureReleasesTheLease(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{2}, finisher: true, noControl: true})
	e.fin.fn = func(_ context.Context, job *events.Job, call int) (pipeline.Outcome, error) {
		if call == 1 {
			return pipeline.Outcome{}, errTransient
		}
		return pipeline.Outcome{Archive: "archives/a.json", Manifest: "archives/a.json.manifest.json", ArchiveSize: 7, Warnings: []string{"w"}}, nil
	}
	e.start(ctx, t, "j")
	e.run(ctx, t, drain(ctx, t, e.tasks))
	_, err := e.eng.Advance(ctx, "j")
	if !errors.Is(err, errTransient) {
		t.Fatalf("failing finish: %v", err)
	}
	if job := e.job(ctx, t, "j"); job.State != events.StateAssembling || job.Finishing != nil {
		t.Fatalf("after a failed finish: %s, lease %+v; want assembling, released", job.State, job.Finishing)
	}
	job, err := e.eng.Advance(ctx, "j")
	if err != nil || job.State != events.StateDone || e.fin.calls.Load() != 2 {
		t.Fatalf("retry: %+v %v", job, err)
	}
	if job.Archive != "archives/a.json" || job.Summary.ArchiveSize != 7 || job.Summary.TasksDone != 2 || !slices.Equal(job.Warnings, []string{"w"}) || job.Finishing != nil {
		t.Fatalf("done record %+v", job)
	}
}

func TestFinishPermanentFailureFailsTheJob(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{1}, finisher: true, noControl: true})
	e.fin.fn = func(context.Context, *events.Job, int) (pipeline.Outcome, error) {
		return pipeline.Outcome{}, pipeline.Permanent(errors.New("every archive name is taken"))
	}
	e.start(ctx, t, "j")
	e.run(ctx, t, drain(ctx, t, e.tasks))
	job, err := e.eng.Advance(ctx, "j")
	if err != nil || job.State != events.StateFailed || len(job.Errors) != 1 {
		t.Fatalf("permanent finish failure: %+v %v", job, err)
	}
	if je := job.Errors[0]; je.Task != "finish" || je.Unit != "archive" || !strings.Contains(je.Message, "every archive name is taken") {
		t.Fatalf("job error %+v", je)
	}
	if err := pipeline.JobFailedError(job); !strings.Contains(err.Error(), "archive: every archive name is taken") {
		t.Fatalf("JobFailedError: %v", err)
	}
	if _, err := e.fs.Stat(ctx, e.jobs.PlanKey("j", "tasks.ndjson")); err != nil {
		t.Fatalf("a failed job's staging was deleted: %v", err)
	}
}

// TestFinishLeaseIsRenewed: a finish step that runs longer than
// FinishLease keeps its lease, so the checks that come meanwhile leave it
// alone.
func TestFinishLeaseIsRenewed(t *testing.T) {
	ctx := testContext(t)
	const lease = 600 * time.Millisecond
	e := newEnv(t, setup{phases: []int{1}, finisher: true, noControl: true, opt: pipeline.Options{FinishLease: lease}})
	release := make(chan struct{})
	e.fin.fn = func(ctx context.Context, job *events.Job, call int) (pipeline.Outcome, error) {
		<-release
		return pipeline.Outcome{Archive: fmt.Sprintf("archives/%d.json", call)}, nil
	}
	e.start(ctx, t, "j")
	e.run(ctx, t, drain(ctx, t, e.tasks))
	done := make(chan error, 1)
	go func() { _, err := e.eng.Advance(ctx, "j"); done <- err }()
	eventually(t, "the finish step to start", func() bool { return e.fin.calls.Load() == 1 })
	until := e.job(ctx, t, "j").Finishing.Until
	for end := time.Now().Add(3 * lease); time.Now().Before(end); time.Sleep(lease / 10) {
		job, err := e.eng.Advance(ctx, "j")
		if err != nil || job.State != events.StateAssembling {
			t.Fatalf("advance during the finish: %+v %v", job, err)
		}
	}
	job := e.job(ctx, t, "j")
	if e.fin.calls.Load() != 1 || job.Finishing == nil || !job.Finishing.Until.After(until) {
		t.Fatalf("%d finish steps, lease %+v (first until %s); want one, renewed", e.fin.calls.Load(), job.Finishing, until)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if job := e.job(ctx, t, "j"); job.State != events.StateDone || job.Archive != "archives/1.json" {
		t.Fatalf("final %+v", job)
	}
}

// TestFinishAfterTakeover: a finish step whose lease expired (its holder
// presumed dead) is taken over; when the old one returns, it cannot
// record the job done, and the successor's outcome stands.
func TestFinishAfterTakeover(t *testing.T) {
	ctx := testContext(t)
	const lease = time.Hour
	e := newEnv(t, setup{phases: []int{1}, finisher: true, noControl: true, opt: pipeline.Options{FinishLease: lease}})
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	e.fin.fn = func(ctx context.Context, job *events.Job, call int) (pipeline.Outcome, error) {
		<-release[call-1]
		return pipeline.Outcome{Archive: fmt.Sprintf("archives/%d.json", call)}, nil
	}
	e.start(ctx, t, "j")
	e.run(ctx, t, drain(ctx, t, e.tasks))
	results := []chan error{make(chan error, 1), make(chan error, 1)}
	go func() { _, err := e.eng.Advance(ctx, "j"); results[0] <- err }()
	eventually(t, "the first finish step", func() bool { return e.fin.calls.Load() == 1 })
	e.clock.Advance(lease + time.Minute)
	go func() { _, err := e.eng.Advance(ctx, "j"); results[1] <- err }()
	eventually(t, "the second finish step", func() bool { return e.fin.calls.Load() == 2 })

	close(release[0])
	if err := <-results[0]; err == nil || !strings.Contains(err.Error(), "lost the finishing lease") {
		t.Fatalf("the finish step that was taken over: %v", err)
	}
	if job := e.job(ctx, t, "j"); job.State != events.StateAssembling {
		t.Fatalf("the old finish step recorded %s", job.State)
	}
	close(release[1])
	if err := <-results[1]; err != nil {
		t.Fatal(err)
	}
	if job := e.job(ctx, t, "j"); job.State != events.StateDone || job.Archive != "archives/2.json" {
		t.Fatalf("final %+v; want the successor's outcome", job)
	}
}

func TestJobTimeout(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{phases: []int{2}, noControl: true, opt: pipeline.Options{JobTimeout: time.Hour}})
	e.start(ctx, t, "j")
	e.run(ctx, t, drain(ctx, t, e.tasks)[:1])
	if job, err := e.eng.Advance(ctx, "j"); err != nil || job.State != events.StateRunning {
		t.Fatalf("within the timeout: %+v %v", job, err)
	}
	e.clock.Advance(time.Hour + time.Minute)
	job, err := e.eng.Advance(ctx, "j")
	if err != nil || job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0].Task != "timeout" ||
		!strings.Contains(job.Errors[0].Message, "not finished") || job.Summary.TasksDone != 1 {
		t.Fatalf("past the timeout: %+v %v", job, err)
	}
}
