package serverless

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/serverless/lambdatest"
)

// TestBackupThroughTheFunctions: a backup started by the scheduler
// function, its tasks run by the worker function and its checks by the
// assembler function, each fed by Lambda's event source over the
// in-memory queues (every task message delivered twice), ends done with
// an archive that verifies.
func TestBackupThroughTheFunctions(t *testing.T) {
	ctx := testContext(t)
	tb := newTestbed(t)
	tb.taskQ.Duplicate = true
	worker := &lambdatest.EventSource{Queue: tb.tasks, Handler: tb.worker(t, tb.config(lambdaenv.Worker)).Handle, BatchSize: 10}
	assembler := &lambdatest.EventSource{Queue: tb.control, Handler: tb.assembler(t, tb.config(lambdaenv.Assembler)).Handle, BatchSize: 1}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, src := range []*lambdatest.EventSource{worker, assembler} {
		wg.Go(func() {
			if err := src.Run(runCtx); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	ictx, cancel := invocation(ctx, "req-1", time.Minute)
	defer cancel()
	payload, _ := json.Marshal(events.StartRequest{JobID: "b1", Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}})
	res, err := tb.scheduler(t, tb.config(lambdaenv.Scheduler)).Handle(ictx, payload)
	if err != nil || res.State != events.StateRunning {
		t.Fatalf("start: %+v %v", res, err)
	}

	var job *events.Job
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if job = tb.job(ctx, t, "b1"); job.State.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s (phase %d, check %d) after 20s", job.State, job.Phase, job.Check)
		}
	}
	if job.State != events.StateDone {
		t.Fatalf("job %s: %v", job.State, job.Errors)
	}
	if _, deleted, failed := worker.Stats(); deleted != 2*res.Tasks || failed != 0 {
		t.Fatalf("worker deleted %d records, failed %d; want both copies of %d tasks deleted", deleted, failed, res.Tasks)
	}
	sum, err := archive.Verify(ctx, filepath.Join(tb.dir, filepath.FromSlash(job.Archive)))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Users != 3 || sum.Objects != 5 || sum.VerifiedObjects != 5 || sum.DOs == 0 || sum.DataNamespaces == 0 || !sum.Config || sum.Manifest != "ok" {
		t.Fatalf("archive summary %+v", sum)
	}
	// The invocation that records the job done deletes its staging area
	// next (never before: a failed done write must find it).
	var staged []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		staged = staged[:0]
		if err := tb.fs.List(ctx, tb.jobs.StagingKey("b1")+"/", func(i blob.Info) error { staged = append(staged, i.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(staged) == 1 && staged[0] == tb.jobs.JobKey("b1") || time.Now().After(deadline) {
			break
		}
	}
	if len(staged) != 1 || staged[0] != tb.jobs.JobKey("b1") {
		t.Fatalf("staging left after the job: %v", staged)
	}
}
