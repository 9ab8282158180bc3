package serverless

import (
	"context"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
)

// runTasks runs every task the task queue holds through the worker
// function until the queue is empty.
func (tb *testbed) runTasks(ctx context.Context, t *testing.T) {
	t.Helper()
	src := newRecording(tb.tasks, tb.worker(t, tb.config(lambdaenv.Worker)).Handle, 10, time.Minute)
	for tb.tasks.Len() > 0 {
		if _, err := src.Poll(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
	if _, _, failed := src.Stats(); failed != 0 {
		t.Fatalf("%d task records failed", failed)
	}
}

// visibleChecks receives (and deletes) the visible check messages.
func visibleChecks(ctx context.Context, t *testing.T, tb *testbed) []events.Check {
	t.Helper()
	var out []events.Check
	for _, d := range receiveAll(ctx, t, tb.control) {
		env, err := events.Decode(d.Body)
		if err != nil || env.Check == nil {
			t.Fatalf("not a check: %s", d.Body)
		}
		out = append(out, *env.Check)
		if err := tb.control.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestAssemblerAdvancesTheJob: each check runs the controller; a stale
// duplicate is deleted without effect; the check after the tasks are done
// assembles the archive and the job-finished metrics are emitted once; a
// check of the finished job ends the chain.
func TestAssemblerAdvancesTheJob(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	cfg := tb.config(lambdaenv.Assembler)
	src := newRecording(tb.control, tb.assembler(t, cfg).Handle, 1, time.Minute)
	tb.startBackup(ctx, t, "b1", events.Options{IncludeStorage: true})

	tb.clock.Advance(cfg.RecheckDelay)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("first check: %+v", resp)
	}
	job := tb.job(ctx, t, "b1")
	if job.State != events.StateRunning || job.Check != 1 {
		t.Fatalf("after the first check: %s, check %d", job.State, job.Check)
	}

	send(ctx, t, tb.control, body(t, events.Envelope{Check: &events.Check{Job: "b1", Seq: 0}}))
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("duplicate check: %+v", resp)
	}
	if after := tb.job(ctx, t, "b1"); after.Revision != job.Revision || tb.control.Len() != 1 {
		t.Fatalf("the duplicate changed the job (revision %d->%d) or queued a check (%d queued)", job.Revision, after.Revision, tb.control.Len())
	}

	tb.runTasks(ctx, t)
	tb.clock.Advance(cfg.RecheckDelay)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("check after the tasks: %+v", resp)
	}
	job = tb.job(ctx, t, "b1")
	if job.State != events.StateDone || job.Archive == "" || job.Summary.ArchiveSize == 0 {
		t.Fatalf("after the last check: %+v", job)
	}
	tb.clock.Advance(cfg.RecheckDelay)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("check of the done job: %+v", resp)
	}
	tb.clock.Advance(time.Hour)
	if n := tb.control.Len(); n != 0 {
		t.Fatalf("the chain of a done job goes on: %d checks queued", n)
	}
	done := tb.metrics.lines(t, metrics.JobsDone)
	if len(done) != 1 || done[0]["job"] != "b1" || done[0][metrics.ArchiveBytes] != float64(job.Summary.ArchiveSize) {
		t.Fatalf("job-finished metrics %v; want one line with the archive size", done)
	}
}

// TestAssemblerDeadLettersWrongMessages: a task message (or anything
// malformed) on the control queue is reported failed and made visible
// at once, on its way to the dead-letter queue.
func TestAssemblerDeadLettersWrongMessages(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	src := newRecording(tb.control, tb.assembler(t, tb.config(lambdaenv.Assembler)).Handle, 10, time.Minute)
	tk := events.Task{Job: "b1", ID: "00000001-config", Kind: events.TaskConfig, Unit: "config"}
	send(ctx, t, tb.control, body(t, events.Envelope{Task: &tk}), []byte(`{"check":{}}`))
	resp := src.poll(ctx, t)
	if len(resp.BatchItemFailures) != 2 {
		t.Fatalf("reported failed %v, want both", failedIDs(resp))
	}
	if ds := receiveAll(ctx, t, tb.control); len(ds) != 2 || ds[0].Attempt != 2 {
		t.Fatalf("visible again: %+v", ds)
	}
}

// TestAssemblerRetriesAFailedCheck: a check whose controller step fails
// is reported failed and comes back after the backoff delay; its
// successor, queued before the failure, keeps the chain going.
func TestAssemblerRetriesAFailedCheck(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	cfg := tb.config(lambdaenv.Assembler)
	cfg.RetryDelay = 40 * time.Second
	src := newRecording(tb.control, tb.assembler(t, cfg).Handle, 1, time.Minute)
	tb.startBackup(ctx, t, "b1", events.Options{})
	tb.store.Inject(blobtest.Fault{Op: blobtest.OpList, Match: func(k string) bool { return k == tb.jobs.StagingKey("b1", "failed")+"/" }, Nth: 1})

	tb.clock.Advance(cfg.RecheckDelay)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("failing check: %+v", resp)
	}
	tb.clock.Advance(cfg.RecheckDelay)
	if got := visibleChecks(ctx, t, tb); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("visible checks %v; want the successor only", got)
	}
	tb.clock.Advance(cfg.RetryDelay - cfg.RecheckDelay - time.Second)
	if got := visibleChecks(ctx, t, tb); len(got) != 0 {
		t.Fatalf("the failed check came back before its backoff delay: %v", got)
	}
	tb.clock.Advance(time.Second)
	if got := visibleChecks(ctx, t, tb); len(got) != 1 || got[0].Seq != 0 {
		t.Fatalf("after the backoff delay: %v; want the failed check again", got)
	}
}

// TestAssemblerFailsAJobWithAFailedTask: the check after a task failed
// for good fails the job, naming the unit, and emits the failure metrics
// once.
func TestAssemblerFailsAJobWithAFailedTask(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{IncludeSecrets: true})
	secrets := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskSecrets)
	send(ctx, t, tb.tasks, body(t, events.Envelope{Task: &secrets}))
	if resp := newRecording(tb.tasks, tb.worker(t, tb.config(lambdaenv.Worker)).Handle, 10, time.Minute).poll(ctx, t); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("the secrets task: %+v", resp)
	}
	job, err := tb.assemblerCheck(ctx, t, "b1")
	if err != nil || job.State != events.StateFailed || len(job.Errors) != 1 || job.Errors[0].Unit != "secrets" {
		t.Fatalf("job %+v %v", job, err)
	}
	if _, err := tb.assemblerCheck(ctx, t, "b1"); err != nil {
		t.Fatal(err)
	}
	failed := tb.metrics.lines(t, metrics.JobsFailed)
	if len(failed) != 1 || failed[0]["level"] != "ERROR" || len(failed[0]["errors"].([]any)) != 1 {
		t.Fatalf("job-failed metrics %v", failed)
	}
}
