package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// keysUnder lists the keys under prefix.
func (e *env) keysUnder(ctx context.Context, t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	if err := e.fs.List(ctx, prefix, func(i blob.Info) error { out = append(out, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeOutput is a handler step that stores a part under the delivery's
// output prefix.
func (e *env) writeOutput(ctx context.Context, u pipeline.Unit) error {
	return e.fs.Put(ctx, u.Output+"part", strings.NewReader(u.Task.Unit))
}

// TestWorkerDropsWhatNeedsNoRun: a redelivery of a finished task, a task
// of a finished or unknown job, succeed without running the handler.
func TestWorkerDropsWhatNeedsNoRun(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	var notified atomic.Int32
	e.eng.Worker.OnFinish = func(events.Task, events.TaskStatus) { notified.Add(1) }
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := task("j", 1, 0)
	if err := e.eng.Worker.Process(ctx, tk, 1); err != nil {
		t.Fatal(err)
	}
	for attempt := 2; attempt <= 3; attempt++ {
		if err := e.eng.Worker.Process(ctx, tk, attempt); err != nil {
			t.Fatalf("redelivery %d: %v", attempt, err)
		}
	}
	st, ok, err := e.jobs.Done(ctx, tk)
	if err != nil || !ok || st.Attempts != 1 || st.State != events.TaskDone || e.fake.callsOf(tk.ID) != 1 || notified.Load() != 1 {
		t.Fatalf("outcome %+v %v %v, %d handler calls, %d notifications; want one run, recorded once", st, ok, err, e.fake.callsOf(tk.ID), notified.Load())
	}

	e.createJob(ctx, t, events.Job{ID: "finished", State: events.StateFailed, PhaseTasks: []int{1}, Tasks: 1})
	if err := e.eng.Worker.Process(ctx, task("finished", 1, 0), 1); err != nil || e.fake.totalCalls() != 1 {
		t.Fatalf("task of a finished job: %v, %d calls", err, e.fake.totalCalls())
	}
	if err := e.eng.Worker.Process(ctx, task("unknown", 1, 0), 1); err != nil || e.fake.totalCalls() != 1 {
		t.Fatalf("task of an unknown job: %v, %d calls", err, e.fake.totalCalls())
	}
	// A task kind nobody handles can never succeed.
	odd := task("j", 2, 0)
	odd.Kind = "no-such-kind"
	if err := e.eng.Worker.Process(ctx, odd, 1); !errors.Is(err, pipeline.ErrTaskFailed) {
		t.Fatalf("unknown task kind: %v", err)
	}
}

// TestWorkerFailedForGood: a task that failed for good (a permanent error,
// or its last attempt) answers every later delivery with ErrTaskFailed
// without running again; the outputs of failed attempts are deleted.
func TestWorkerFailedForGood(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{opt: pipeline.Options{MaxAttempts: 3}})
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if err := e.writeOutput(ctx, u); err != nil {
			return pipeline.Result{}, err
		}
		if u.Task.Unit == "unit-1" {
			return pipeline.Result{}, pipeline.Permanent(errors.New("refused"))
		}
		return pipeline.Result{}, errTransient
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{2}, Tasks: 2})

	perm := task("j", 1, 0)
	for attempt := 1; attempt <= 3; attempt++ {
		err := e.eng.Worker.Process(ctx, perm, attempt)
		if !errors.Is(err, pipeline.ErrTaskFailed) || !strings.Contains(err.Error(), "unit-1") || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("permanent failure, delivery %d: %v", attempt, err)
		}
	}
	if n := e.fake.callsOf(perm.ID); n != 1 {
		t.Fatalf("a task that failed for good ran %d times", n)
	}

	tr := task("j", 2, 0)
	for attempt := 1; attempt <= 2; attempt++ {
		err := e.eng.Worker.Process(ctx, tr, attempt)
		if !errors.Is(err, errTransient) || errors.Is(err, pipeline.ErrTaskFailed) {
			t.Fatalf("transient failure, attempt %d: %v", attempt, err)
		}
		if d := pipeline.Decide(ctx, err, attempt, 3, pipeline.Backoff{Base: time.Second}); d.Action != pipeline.Retry {
			t.Fatalf("attempt %d decided %v, want retry", attempt, d.Action)
		}
		st, ok, _ := e.jobs.Retrying(ctx, tr)
		if !ok || st.Attempts != attempt || st.State != events.TaskRetrying || st.Output != "" {
			t.Fatalf("retry record after attempt %d: %+v %v", attempt, st, ok)
		}
	}
	if err := e.eng.Worker.Process(ctx, tr, 3); !errors.Is(err, pipeline.ErrTaskFailed) {
		t.Fatalf("last attempt: %v", err)
	}
	if err := e.eng.Worker.Process(ctx, tr, 4); !errors.Is(err, pipeline.ErrTaskFailed) || e.fake.callsOf(tr.ID) != 3 {
		t.Fatalf("delivery after the last attempt: %v (%d runs)", err, e.fake.callsOf(tr.ID))
	}
	st, ok, _ := e.jobs.Failed(ctx, tr)
	if !ok || st.Attempts != 3 || st.Error != errTransient.Error() {
		t.Fatalf("failure record %+v %v", st, ok)
	}
	if keys := e.keysUnder(ctx, t, e.jobs.StagingKey("j", "parts")+"/"); len(keys) != 0 {
		t.Fatalf("outputs of failed attempts kept: %v", keys)
	}
}

// TestWorkerConcurrentDeliveries: two deliveries of one task running at
// the same time both succeed, but exactly one outcome is recorded; the
// other delivery's outputs are deleted and never named.
func TestWorkerConcurrentDeliveries(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	var notified atomic.Int32
	e.eng.Worker.OnFinish = func(events.Task, events.TaskStatus) { notified.Add(1) }
	var mu sync.Mutex
	var outputs []string
	inside := make(chan struct{})
	var entered atomic.Int32
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if err := e.writeOutput(ctx, u); err != nil {
			return pipeline.Result{}, err
		}
		mu.Lock()
		outputs = append(outputs, u.Output)
		mu.Unlock()
		if entered.Add(1) == 2 {
			close(inside)
		}
		select { // both deliveries are running the task now
		case <-inside:
		case <-ctx.Done():
		}
		return pipeline.Result{Rows: 1}, ctx.Err()
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := task("j", 1, 0)
	errs := make(chan error, 2)
	for attempt := 1; attempt <= 2; attempt++ {
		go func() { errs <- e.eng.Worker.Process(ctx, tk, attempt) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, ok, err := e.jobs.Done(ctx, tk)
	if err != nil || !ok {
		t.Fatalf("no outcome: %v", err)
	}
	if len(outputs) != 2 || outputs[0] == outputs[1] || (st.Output != outputs[0] && st.Output != outputs[1]) {
		t.Fatalf("outputs %v, recorded %q; want two distinct prefixes, one of them recorded", outputs, st.Output)
	}
	keys := e.keysUnder(ctx, t, e.jobs.StagingKey("j", "parts", tk.ID)+"/")
	if len(keys) != 1 || keys[0] != st.Output+"part" {
		t.Fatalf("parts left %v; want only the recorded delivery's (%s)", keys, st.Output)
	}
	if notified.Load() != 1 {
		t.Fatalf("%d outcomes notified, want 1", notified.Load())
	}
}

// TestWorkerPhaseFence: tasks run only in their own phase. A task of a
// closed phase is dropped (a late wipe would destroy what later phases
// restored); a task of a phase not yet open fails so it is retried.
func TestWorkerPhaseFence(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, Phase: 1, PhaseTasks: []int{2, 1, 1}, Tasks: 4})
	lateWipe := task("j", 1, 0)
	lateWipe.Wipes = true
	for _, tk := range []events.Task{lateWipe, task("j", 2, 0)} {
		if err := e.eng.Worker.Process(ctx, tk, 1); err != nil {
			t.Fatalf("task of a closed phase (wipes=%v): %v", tk.Wipes, err)
		}
		if _, ok, _ := e.jobs.Done(ctx, tk); ok {
			t.Fatalf("dropped task %s recorded as done", tk.ID)
		}
	}
	early := task("j", 4, 2)
	err := e.eng.Worker.Process(ctx, early, 1)
	if err == nil || errors.Is(err, pipeline.ErrTaskFailed) || pipeline.IsPermanent(err) {
		t.Fatalf("task of a later phase: %v, want a transient error", err)
	}
	if e.fake.totalCalls() != 0 {
		t.Fatalf("fenced tasks ran %d times", e.fake.totalCalls())
	}
	if err := e.eng.Worker.Process(ctx, task("j", 3, 1), 1); err != nil || e.fake.totalCalls() != 1 {
		t.Fatalf("task of the open phase: %v", err)
	}
}

// wipeTask is a run-once task of the open phase of job j.
func wipeTask(job string, seq int) events.Task {
	tk := task(job, seq, 0)
	tk.Wipes = true
	return tk
}

// TestWorkerLeaseRunsAWipeOnce: a second delivery of a wipe that is
// running is told ErrBusy (requeued, no attempt used); the lease is kept
// after success, and a delivery after the task is done is a no-op.
func TestWorkerLeaseRunsAWipeOnce(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{opt: pipeline.Options{LeaseTimeout: time.Hour}})
	release := make(chan struct{})
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return pipeline.Result{}, ctx.Err()
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := wipeTask("j", 1)
	first := make(chan error, 1)
	go func() { first <- e.eng.Worker.Process(ctx, tk, 1) }()
	eventually(t, "the first delivery to run", func() bool { return e.fake.callsOf(tk.ID) == 1 })

	err := e.eng.Worker.Process(ctx, tk, 1)
	if !errors.Is(err, pipeline.ErrBusy) {
		t.Fatalf("second delivery: %v, want ErrBusy", err)
	}
	if d := pipeline.Decide(ctx, err, 1, 3, pipeline.Backoff{Base: time.Second}); d.Action != pipeline.Requeue || d.Delay != time.Second {
		t.Fatalf("busy decided %v %s, want requeue after the base delay", d.Action, d.Delay)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Worker.Process(ctx, tk, 2); err != nil || e.fake.callsOf(tk.ID) != 1 {
		t.Fatalf("delivery after done: %v, %d runs", err, e.fake.callsOf(tk.ID))
	}
	if _, err := e.fs.Stat(ctx, e.jobs.StagingKey("j", "locks", tk.ID)); err != nil {
		t.Fatalf("the lease of a finished wipe is gone: %v", err)
	}
}

// TestWorkerLeaseTakeover: a lease whose holder outlived LeaseTimeout is
// taken over, by exactly one of two late deliveries that race for it
// (compare-and-swap); the other is told ErrBusy.
func TestWorkerLeaseTakeover(t *testing.T) {
	ctx := testContext(t)
	const timeout = time.Hour
	e := newEnv(t, setup{opt: pipeline.Options{LeaseTimeout: timeout}})
	hung := make(chan struct{})
	var runs atomic.Int32
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if runs.Add(1) == 1 {
			<-hung // the first holder hangs past its lease
			return pipeline.Result{}, errors.New("too late")
		}
		return pipeline.Result{}, nil
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := wipeTask("j", 1)
	first := make(chan error, 1)
	go func() { first <- e.eng.Worker.Process(ctx, tk, 1) }()
	eventually(t, "the first delivery to run", func() bool { return runs.Load() == 1 })

	e.clock.Advance(timeout + time.Minute)
	// Both late deliveries read the expired lease before either replaces it.
	lock := e.jobs.StagingKey("j", "locks", tk.ID)
	e.store.Inject(blobtest.Fault{Op: blobtest.OpReplace, Match: func(k string) bool { return k == lock }, Delay: 100 * time.Millisecond})
	errs := make(chan error, 2)
	for attempt := 2; attempt <= 3; attempt++ {
		go func() { errs <- e.eng.Worker.Process(ctx, tk, attempt) }()
	}
	var busy, ok int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, pipeline.ErrBusy) && strings.Contains(err.Error(), "took over"):
			busy++
		default:
			t.Errorf("late delivery: %v", err)
		}
	}
	if ok != 1 || busy != 1 || runs.Load() != 2 {
		t.Fatalf("%d succeeded, %d busy, %d runs; want exactly one takeover", ok, busy, runs.Load())
	}
	if _, done, _ := e.jobs.Done(ctx, tk); !done {
		t.Fatal("the task that took over recorded no outcome")
	}
	close(hung)
	if err := <-first; err == nil {
		t.Fatal("the hung delivery's failure was not reported")
	}
}

// TestWorkerLateFailureKeepsTheSuccessorsLease: a holder presumed dead
// whose run fails after another delivery took its lease over must not
// free that delivery's lease: a third delivery is still told ErrBusy
// rather than running the wipe a second time at once.
func TestWorkerLateFailureKeepsTheSuccessorsLease(t *testing.T) {
	ctx := testContext(t)
	const timeout = time.Hour
	e := newEnv(t, setup{opt: pipeline.Options{LeaseTimeout: timeout}})
	hung, successor := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		switch runs.Add(1) {
		case 1:
			<-hung
			return pipeline.Result{}, errTransient
		case 2:
			<-successor
		}
		return pipeline.Result{}, nil
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := wipeTask("j", 1)
	results := []chan error{make(chan error, 1), make(chan error, 1)}
	go func() { results[0] <- e.eng.Worker.Process(ctx, tk, 1) }()
	eventually(t, "the first delivery to run", func() bool { return runs.Load() == 1 })
	e.clock.Advance(timeout + time.Minute)
	go func() { results[1] <- e.eng.Worker.Process(ctx, tk, 2) }()
	eventually(t, "the takeover", func() bool { return runs.Load() == 2 })

	close(hung)
	if err := <-results[0]; !errors.Is(err, errTransient) {
		t.Fatalf("the late holder: %v", err)
	}
	if err := e.eng.Worker.Process(ctx, tk, 3); !errors.Is(err, pipeline.ErrBusy) || runs.Load() != 2 {
		t.Fatalf("a delivery while the successor runs: %v after %d runs; want ErrBusy, no third run", err, runs.Load())
	}
	close(successor)
	if err := <-results[1]; err != nil {
		t.Fatal(err)
	}
}

// TestWorkerFailedRunReleasesItsLease: a wipe whose run failed frees its
// lease, so its retry runs at once instead of waiting out LeaseTimeout.
func TestWorkerFailedRunReleasesItsLease(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{opt: pipeline.Options{LeaseTimeout: time.Hour}})
	e.fake.run = func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if e.fake.callsOf(u.Task.ID) == 1 {
			return pipeline.Result{}, errTransient
		}
		return pipeline.Result{}, nil
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{1}, Tasks: 1})
	tk := wipeTask("j", 1)
	lease := func() events.Lease {
		var l events.Lease
		if err := e.jobs.GetJSON(ctx, e.jobs.StagingKey("j", "locks", tk.ID), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := e.eng.Worker.Process(ctx, tk, 1); !errors.Is(err, errTransient) {
		t.Fatalf("first run: %v", err)
	}
	failed := lease()
	if failed.Live(e.clock.Now()) {
		t.Fatalf("lease after a failed run: %+v, want released", failed)
	}
	if err := e.eng.Worker.Process(ctx, tk, 2); err != nil || e.fake.callsOf(tk.ID) != 2 {
		t.Fatalf("retry: %v after %d runs", err, e.fake.callsOf(tk.ID))
	}
	if l := lease(); !l.Live(e.clock.Now()) || l.Owner == failed.Owner {
		t.Fatalf("lease after the retry succeeded: %+v, want the retry's, kept", l)
	}
}

// TestRecordLost: a task whose last delivery could not run it is recorded
// as failed (its job fails instead of waiting), once; a finished task is
// left alone.
func TestRecordLost(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	var seen []events.TaskStatus
	e.eng.Worker.OnFinish = func(_ events.Task, st events.TaskStatus) { seen = append(seen, st) }
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{2}, Tasks: 2})
	lost, done := task("j", 1, 0), task("j", 2, 0)
	e.eng.Worker.RecordLost(ctx, lost, 3, "not finished before the deadline")
	e.eng.Worker.RecordLost(ctx, lost, 4, "a second reason")
	st, ok, err := e.jobs.Failed(ctx, lost)
	if err != nil || !ok || st.State != events.TaskFailed || st.Attempts != 3 || st.Error != "not finished before the deadline" || st.Unit != "unit-1" {
		t.Fatalf("lost task: %+v %v %v", st, ok, err)
	}
	if err := e.eng.Worker.Process(ctx, lost, 5); !errors.Is(err, pipeline.ErrTaskFailed) || e.fake.totalCalls() != 0 {
		t.Fatalf("delivery of a lost task: %v", err)
	}
	e.run(ctx, t, []events.Task{done})
	e.eng.Worker.RecordLost(ctx, done, 3, "late")
	if _, ok, _ := e.jobs.Failed(ctx, done); ok {
		t.Fatal("a finished task was recorded as lost")
	}
	if n, _, _ := e.jobs.Failures(ctx, "j", 0); n != 1 {
		t.Fatalf("%d failures, want 1", n)
	}
	if len(seen) < 2 || seen[0].State != events.TaskFailed || seen[0].Task != lost.ID {
		t.Fatalf("notifications %+v", seen)
	}
}
