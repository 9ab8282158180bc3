package serverless

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
)

// TestWorkerPartialBatch: of a batch holding a good task, a malformed
// message and a task of a job that does not exist, only the malformed
// message is reported failed (on its way to the dead-letter queue, made
// visible at once); the other two are deleted.
func TestWorkerPartialBatch(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{})
	good := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskConfig)
	unknown := good
	unknown.Job = "no-such-job"
	send(ctx, t, tb.tasks, body(t, events.Envelope{Task: &good}), []byte(`{"task":{"job":"b1"`), body(t, events.Envelope{Task: &unknown}))

	src := newRecording(tb.tasks, tb.worker(t, tb.config(lambdaenv.Worker)).Handle, 10, time.Minute)
	resp := src.poll(ctx, t)
	ev := src.lastEvent()
	if len(ev.Records) != 3 {
		t.Fatalf("batch of %d records", len(ev.Records))
	}
	malformed := ev.Records[1].MessageId
	if got := failedIDs(resp); !slices.Equal(got, []string{malformed}) {
		t.Fatalf("reported failed %v, want only the malformed message %s", got, malformed)
	}
	if _, deleted, failed := src.Stats(); deleted != 2 || failed != 1 {
		t.Fatalf("deleted %d, failed %d", deleted, failed)
	}
	if _, done, err := tb.jobs.Done(ctx, good); !done || err != nil {
		t.Fatalf("the good task has no outcome: %v", err)
	}
	left := receiveAll(ctx, t, tb.tasks)
	if len(left) != 1 || left[0].ID != malformed || left[0].Attempt != 2 {
		t.Fatalf("left in the queue: %+v; want the malformed message, visible at once", left)
	}
	if tb.metricCount(t, metrics.UnitsDone) != 1 {
		t.Fatalf("%d UnitsDone", tb.metricCount(t, metrics.UnitsDone))
	}
}

// TestWorkerRetriesWithBackoff: a task failing transiently is reported
// failed and hidden for the backoff delay; on its last attempt (the
// configured MaxAttempts) it is recorded as failed for good and
// dead-lettered.
func TestWorkerRetriesWithBackoff(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{})
	cfg := tb.config(lambdaenv.Worker)
	cfg.MaxAttempts, cfg.RetryDelay = 2, 30*time.Second
	w := tb.worker(t, cfg)
	if w.MaxAttempts() != 2 {
		t.Fatalf("MaxAttempts %d, want the configured 2", w.MaxAttempts())
	}
	tk := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskConfig)
	send(ctx, t, tb.tasks, body(t, events.Envelope{Task: &tk}))
	tb.emu.SetFault("config", edgebasetest.Fault{Status: 503})

	src := newRecording(tb.tasks, w.Handle, 10, time.Minute)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("first attempt: %+v", resp)
	}
	if st, ok, _ := tb.jobs.Retrying(ctx, tk); !ok || st.Attempts != 1 {
		t.Fatalf("retry record %+v %v", st, ok)
	}
	if n, _ := src.Poll(ctx, 0); n != 0 {
		t.Fatal("retried before its backoff delay")
	}
	tb.clock.Advance(cfg.RetryDelay - time.Second)
	if n, _ := src.Poll(ctx, 0); n != 0 {
		t.Fatal("retried before its backoff delay")
	}
	tb.clock.Advance(time.Second)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("last attempt: %+v", resp)
	}
	st, ok, _ := tb.jobs.Failed(ctx, tk)
	if !ok || st.Attempts != 2 || !strings.Contains(st.Error, "503") {
		t.Fatalf("after the last attempt: %+v %v; want failed for good", st, ok)
	}
	if ds := receiveAll(ctx, t, tb.tasks); len(ds) != 1 || ds[0].Attempt != 3 {
		t.Fatalf("dead-lettered message: %+v; want it visible at once (SQS moves it)", ds)
	}
	if tb.metricCount(t, metrics.UnitsRetried) != 1 || tb.metricCount(t, metrics.UnitsFailed) != 1 {
		t.Fatalf("metrics: %d retried, %d failed", tb.metricCount(t, metrics.UnitsRetried), tb.metricCount(t, metrics.UnitsFailed))
	}
}

// TestWorkerDeadLettersAPermanentFailure: a task that fails permanently
// (secrets asked for, no secret store) is dead-lettered on its first
// attempt with its failure recorded.
func TestWorkerDeadLettersAPermanentFailure(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{IncludeSecrets: true})
	tk := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskSecrets)
	send(ctx, t, tb.tasks, body(t, events.Envelope{Task: &tk}))
	src := newRecording(tb.tasks, tb.worker(t, tb.config(lambdaenv.Worker)).Handle, 10, time.Minute)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("response %+v", resp)
	}
	st, ok, _ := tb.jobs.Failed(ctx, tk)
	if !ok || st.Attempts != 1 || !strings.Contains(st.Error, "no secret store") {
		t.Fatalf("failure record %+v %v", st, ok)
	}
	failed := tb.metrics.lines(t, metrics.UnitsFailed)
	if len(failed) != 1 || failed[0]["level"] != "ERROR" || failed[0]["unit"] != "secrets" {
		t.Fatalf("failure metrics %v", failed)
	}
}

// TestWorkerSoftDeadline: records not started DeadlineMargin before the
// Lambda deadline are reported failed and made visible at once, and so is
// a task cut short by it; on a task's last attempt, its failure is
// recorded, so its job fails instead of waiting for it.
func TestWorkerSoftDeadline(t *testing.T) {
	for _, last := range []bool{false, true} {
		t.Run(map[bool]string{false: "early attempt", true: "last attempt"}[last], func(t *testing.T) {
			ctx := testContext(t)
			tb := newTestbed(t)
			tb.startBackup(ctx, t, "b1", events.Options{})
			tasks := takeTasks(ctx, t, tb.tasks)
			slow := taskOf(t, tasks, events.TaskConfig)
			others := []events.Task{taskOf(t, tasks, events.TaskControlD1), taskOf(t, tasks, events.TaskAuthD1)}
			for _, tk := range append([]events.Task{slow}, others...) {
				send(ctx, t, tb.tasks, body(t, events.Envelope{Task: &tk}))
			}
			tb.emu.SetFault("config", edgebasetest.Fault{Latency: time.Minute})
			cfg := tb.config(lambdaenv.Worker)
			cfg.BatchConcurrency = 1
			attempt := 1
			if last {
				attempt = cfg.MaxAttempts
				for range attempt - 1 {
					for _, d := range receiveAll(ctx, t, tb.tasks) {
						if err := tb.tasks.Nack(ctx, d, 0); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			// 2 s left: the soft deadline is a quarter of that before. The
			// handler must answer before Lambda's own deadline would kill
			// it (and lose the batch response).
			const left = 2 * time.Second
			src := newRecording(tb.tasks, tb.worker(t, cfg).Handle, 10, left)
			start := time.Now()
			resp := src.poll(ctx, t)
			if took := time.Since(start); took >= left {
				t.Fatalf("the handler returned after %s, past the invocation's deadline", took)
			}
			if len(resp.BatchItemFailures) != 3 {
				t.Fatalf("reported failed %v, want all three records", failedIDs(resp))
			}
			if ds := receiveAll(ctx, t, tb.tasks); len(ds) != 3 || ds[0].Attempt != attempt+1 {
				t.Fatalf("visible again: %d records; want all three at once", len(ds))
			}
			if started := tb.metrics.lines(t, metrics.TaskDuration); len(started) != 1 || started[0]["task"] != slow.ID {
				t.Fatalf("tasks started: %v; want only the first, none after the soft deadline", started)
			}
			for _, tk := range append([]events.Task{slow}, others...) {
				st, failed, _ := tb.jobs.Failed(ctx, tk)
				if failed != last || (last && (st.Attempts != attempt || !strings.Contains(st.Error, "Lambda deadline"))) {
					t.Fatalf("%s: failure record %+v %v; want one only on the last attempt", tk.Unit, st, failed)
				}
			}
			job, err := tb.assemblerCheck(ctx, t, "b1")
			if err != nil || (job.State == events.StateFailed) != last {
				t.Fatalf("job after a check: %s %v %v", job.State, job.Errors, err)
			}
		})
	}
}

// assemblerCheck lets the job's next check come due and runs the
// assembler on it.
func (tb *testbed) assemblerCheck(ctx context.Context, t *testing.T, id string) (*events.Job, error) {
	t.Helper()
	tb.clock.Advance(tb.config(lambdaenv.Assembler).RecheckDelay)
	src := newRecording(tb.control, tb.assembler(t, tb.config(lambdaenv.Assembler)).Handle, 1, time.Minute)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		return nil, fmt.Errorf("check of %s failed", id)
	}
	return tb.job(ctx, t, id), nil
}

// TestWorkerRequeuesABusyTask: a run-once task whose lease another
// delivery holds is sent again after the backoff delay and deleted, so
// waiting uses up no attempt.
func TestWorkerRequeuesABusyTask(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{})
	tk := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskConfig)
	tk.Wipes = true
	held := events.Lease{Owner: "another delivery", Until: tb.clock.Now().Add(time.Hour)}
	if err := tb.jobs.PutJSON(ctx, tb.jobs.StagingKey("b1", "locks", tk.ID), held); err != nil {
		t.Fatal(err)
	}
	b := body(t, events.Envelope{Task: &tk})
	send(ctx, t, tb.tasks, b)
	configReads := len(tb.emu.RequestsTo("config"))
	cfg := tb.config(lambdaenv.Worker)
	src := newRecording(tb.tasks, tb.worker(t, cfg).Handle, 10, time.Minute)
	if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("a busy task was reported failed: %+v", resp)
	}
	if _, deleted, _ := src.Stats(); deleted != 1 || tb.tasks.Len() != 1 {
		t.Fatalf("deleted %d, %d left; want the original deleted, a copy queued", deleted, tb.tasks.Len())
	}
	if ds := receiveAll(ctx, t, tb.tasks); len(ds) != 0 {
		t.Fatal("the copy is visible before the backoff delay")
	}
	tb.clock.Advance(cfg.RetryDelay)
	ds := receiveAll(ctx, t, tb.tasks)
	if len(ds) != 1 || ds[0].Attempt != 1 || string(ds[0].Body) != string(b) {
		t.Fatalf("copy %+v; want the same task, first attempt", ds)
	}
	if len(tb.emu.RequestsTo("config")) != configReads {
		t.Fatal("the busy task ran")
	}
}

// TestWorkerRecordsOutcomeOnce: the worker's OnFinish metrics follow the
// engine's outcomes (a redelivery after done emits nothing).
func TestWorkerRecordsOutcomeOnce(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{})
	tk := taskOf(t, takeTasks(ctx, t, tb.tasks), events.TaskAuthD1)
	b := body(t, events.Envelope{Task: &tk})
	send(ctx, t, tb.tasks, b, b)
	src := newRecording(tb.tasks, tb.worker(t, tb.config(lambdaenv.Worker)).Handle, 1, time.Minute)
	for range 2 {
		if resp := src.poll(ctx, t); len(resp.BatchItemFailures) != 0 {
			t.Fatalf("%+v", resp)
		}
	}
	if n := len(tb.emu.RequestsTo("dump-d1")); n != 1 || tb.metricCount(t, metrics.UnitsDone) != 1 {
		t.Fatalf("%d dumps, %d UnitsDone; want one of each", n, tb.metricCount(t, metrics.UnitsDone))
	}
	if tb.tasks.Len() != 0 {
		t.Fatalf("%d messages left", tb.tasks.Len())
	}
}
