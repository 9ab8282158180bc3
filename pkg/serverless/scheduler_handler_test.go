package serverless

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

// TestSchedulerStartsAJob: a start request leaves the job running with
// its first check (due after RecheckDelay) and its tasks queued.
func TestSchedulerStartsAJob(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	cfg := tb.config(lambdaenv.Scheduler)
	ictx, cancel := invocation(ctx, "req-1", time.Minute)
	defer cancel()
	res, err := tb.scheduler(t, cfg).Handle(ictx, json.RawMessage(`{"jobId":"b1","kind":"backup","options":{"includeStorage":true}}`))
	if err != nil || res.JobID != "b1" || res.Kind != events.KindBackup || res.State != events.StateRunning || res.Tasks == 0 || res.Error != "" {
		t.Fatalf("start: %+v %v", res, err)
	}
	job := tb.job(ctx, t, "b1")
	if job.Trigger != events.TriggerSchedule || !job.Options.IncludeStorage || job.QueuedPhase != 0 || job.Target != tb.emu.URL() {
		t.Fatalf("job %+v", job)
	}
	if tasks := takeTasks(ctx, t, tb.tasks); len(tasks) != res.Tasks {
		t.Fatalf("%d tasks queued, the plan has %d", len(tasks), res.Tasks)
	}
	if got := visibleChecks(ctx, t, tb); len(got) != 0 {
		t.Fatalf("first check visible before its delay: %v", got)
	}
	tb.clock.Advance(cfg.RecheckDelay)
	if got := visibleChecks(ctx, t, tb); !slices.Equal(got, []events.Check{{Job: "b1", Seq: 0}}) {
		t.Fatalf("checks %v", got)
	}
	// The stack's restore-started notice is a metric filter on these two
	// top-level fields ({ ($.JobsStarted = 1) && ($.kind = "restore") }).
	if started := tb.metrics.lines(t, metrics.JobsStarted); len(started) != 1 || started[0][metrics.JobsStarted] != float64(1) || started[0]["kind"] != "backup" {
		t.Fatalf("JobsStarted metric documents %v; want one, with the job's kind", started)
	}
}

// TestSchedulerRetriedStart: a start whose task sends failed part-way is
// retried by Lambda with the same request id; the retry finds the job it
// created, sends every task again (workers drop duplicates), and no
// second job is ever started or planned.
func TestSchedulerRetriedStart(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	s := tb.scheduler(t, tb.config(lambdaenv.Scheduler))
	payload := json.RawMessage(`{"kind":"backup"}`)
	tb.taskQ.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1, Partial: 3})
	ictx, cancel := invocation(ctx, "req-1", time.Minute)
	defer cancel()
	first, err := s.Handle(ictx, payload)
	if err == nil || !errors.Is(err, queuetest.ErrInjected) || first.JobID == "" {
		t.Fatalf("first attempt: %+v %v; want an error, so Lambda retries", first, err)
	}
	if n := tb.tasks.Len(); n != 3 {
		t.Fatalf("%d tasks sent by the first attempt, want 3", n)
	}
	for range 2 { // Lambda's retry, and a duplicate of it
		res, err := s.Handle(ictx, payload)
		if err != nil || res.JobID != first.JobID || res.State != events.StateRunning {
			t.Fatalf("retry: %+v %v", res, err)
		}
	}
	job := tb.job(ctx, t, first.JobID)
	ids := map[string]int{}
	for _, tk := range takeTasks(ctx, t, tb.tasks) {
		ids[tk.ID]++
	}
	if len(ids) != job.Tasks || job.Tasks < 5 {
		t.Fatalf("%d distinct tasks queued, the plan has %d", len(ids), job.Tasks)
	}
	for id, n := range ids {
		if n > 2 {
			t.Fatalf("task %s queued %d times; a retry after the phase was queued sends nothing", id, n)
		}
	}
	var jobs []string
	if err := tb.jobs.ListIndex(ctx, events.KindBackup, "", func(_, id string) bool { jobs = append(jobs, id); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(jobs, []string{first.JobID}) || len(tb.emu.RequestsTo("config")) != 1 {
		t.Fatalf("jobs %v, planned %d times; want one job planned once", jobs, len(tb.emu.RequestsTo("config")))
	}
}

// TestSchedulerWatchdog: the watchdog input runs a watchdog round and
// reports it: a job whose check chain broke is revived.
func TestSchedulerWatchdog(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.startBackup(ctx, t, "b1", events.Options{})
	tb.clock.Advance(time.Hour)
	visibleChecks(ctx, t, tb) // the chain's check is lost
	ictx, cancel := invocation(ctx, "watchdog-1", time.Minute)
	defer cancel()
	res, err := tb.scheduler(t, tb.config(lambdaenv.Scheduler)).Handle(ictx, json.RawMessage(lambdaenv.WatchdogInput))
	if err != nil || res.Watchdog == nil || res.Watchdog.Jobs != 1 || !slices.Equal(res.Watchdog.Revived, []string{"b1"}) || len(res.Watchdog.Failed) != 0 {
		t.Fatalf("watchdog: %+v %v", res.Watchdog, err)
	}
	if got := visibleChecks(ctx, t, tb); !slices.Equal(got, []events.Check{{Job: "b1", Seq: 0}}) {
		t.Fatalf("checks %v", got)
	}
	if tb.metricCount(t, metrics.JobsStalled) != 1 {
		t.Fatal("no JobsStalled metric")
	}
}

func TestSchedulerRejectsBadInput(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	s := tb.scheduler(t, tb.config(lambdaenv.Scheduler))
	for _, in := range []string{`not json`, `{"kind":"purge"}`, `{"kind":"backup","jobId":"../x"}`, `{"kind":"backup","extra":1}`} {
		ictx, cancel := invocation(ctx, "r", time.Minute)
		if _, err := s.Handle(ictx, json.RawMessage(in)); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v", in, err)
		}
		cancel()
	}
	// Without a job id, the id comes from the invocation: none, no job.
	if _, err := s.Handle(ctx, json.RawMessage(`{"kind":"backup"}`)); !errors.Is(err, ErrBadInput) {
		t.Errorf("no request id: %v", err)
	}
	if tb.tasks.Len() != 0 || tb.control.Len() != 0 || len(tb.emu.RequestsTo("config")) != 0 {
		t.Fatal("bad input started something")
	}
}

// TestSchedulerPlanningCutShort: a planning that runs into the soft
// deadline fails the job saying so; the invocation succeeds (a retry
// would find the failed job and change nothing).
func TestSchedulerPlanningCutShort(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.emu.SetFault("config", edgebasetest.Fault{Latency: time.Minute})
	ictx, cancel := invocation(ctx, "req-1", 800*time.Millisecond)
	defer cancel()
	res, err := tb.scheduler(t, tb.config(lambdaenv.Scheduler)).Handle(ictx, json.RawMessage(`{"jobId":"b1","kind":"backup"}`))
	if err != nil || res.State != events.StateFailed || !strings.Contains(res.Error, "context deadline exceeded") {
		t.Fatalf("result %+v %v", res, err)
	}
	job := tb.job(ctx, t, "b1")
	if job.State != events.StateFailed || len(job.Errors) != 1 || !strings.HasPrefix(job.Errors[0].Message, "planning did not finish in the time it had") {
		t.Fatalf("job %+v", job)
	}
	if tb.metricCount(t, metrics.JobsFailed) != 1 || tb.tasks.Len() != 0 || tb.control.Len() != 0 {
		t.Fatal("a failed planning queued work or emitted no JobsFailed")
	}
}
