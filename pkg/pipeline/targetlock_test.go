package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
)

var lockNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

func lockJobs(t *testing.T) *pipeline.Jobs {
	t.Helper()
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := pipeline.NewJobs(store, "jobs/", "backups/", lockNow)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// newJob stores a running job's record.
func newJob(t *testing.T, jobs *pipeline.Jobs, id string, kind events.JobKind, target string) *events.Job {
	t.Helper()
	j := &events.Job{ID: id, Kind: kind, State: events.StateRunning, Target: target, CreatedAt: lockNow()}
	if err := jobs.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

func end(t *testing.T, jobs *pipeline.Jobs, id string, state events.JobState) {
	t.Helper()
	if _, err := jobs.Update(context.Background(), id, func(j *events.Job) error { j.State = state; return nil }); err != nil {
		t.Fatal(err)
	}
}

func busyHolder(t *testing.T, err error) string {
	t.Helper()
	var be *pipeline.TargetBusyError
	if !errors.As(err, &be) || !errors.Is(err, pipeline.ErrTargetBusy) {
		t.Fatalf("want a TargetBusyError, got %v", err)
	}
	return be.Holder.Job
}

func TestTargetLock(t *testing.T) {
	ctx := context.Background()
	jobs := lockJobs(t)
	const target, other = "https://a.example", "https://b.example"
	b1 := newJob(t, jobs, "b1", events.KindBackup, target)
	b2 := newJob(t, jobs, "b2", events.KindBackup, target)
	r1 := newJob(t, jobs, "r1", events.KindRestore, target)

	// Backups share the target.
	for _, j := range []*events.Job{b1, b2, b1} {
		if err := jobs.AcquireTarget(ctx, j); err != nil {
			t.Fatalf("%s: %v", j.ID, err)
		}
	}
	// A restore does not start while they run, and leaves nothing held.
	if h := busyHolder(t, jobs.AcquireTarget(ctx, r1)); h != "b1" && h != "b2" {
		t.Fatalf("restore refused naming %s", h)
	}
	if h, err := jobs.TargetBusy(ctx, "", events.KindRestore); err != nil || h == nil || h.Kind != events.KindBackup {
		t.Fatalf("TargetBusy for a restore: %+v %v", h, err)
	}
	if h, err := jobs.TargetBusy(ctx, "", events.KindBackup); err != nil || h != nil {
		t.Fatalf("TargetBusy for a backup while only backups run: %+v %v", h, err)
	}
	// Ending the backups (done, failed) gives the target back.
	end(t, jobs, "b1", events.StateDone)
	end(t, jobs, "b2", events.StateFailed)
	if err := jobs.AcquireTarget(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if err := jobs.AcquireTarget(ctx, r1); err != nil {
		t.Fatalf("a retried start of the holder: %v", err)
	}
	// Nothing else starts on the target while the restore runs; other
	// targets are not concerned.
	b3 := newJob(t, jobs, "b3", events.KindBackup, target)
	r2 := newJob(t, jobs, "r2", events.KindRestore, target)
	for _, j := range []*events.Job{b3, r2} {
		if h := busyHolder(t, jobs.AcquireTarget(ctx, j)); h != "r1" {
			t.Fatalf("%s refused naming %s", j.ID, h)
		}
	}
	if h, err := jobs.TargetBusy(ctx, target, events.KindBackup); err != nil || h == nil || h.Job != "r1" || h.Target != target {
		t.Fatalf("TargetBusy: %+v %v", h, err)
	}
	if h, err := jobs.TargetBusy(ctx, other, events.KindRestore); err != nil || h != nil {
		t.Fatalf("TargetBusy of another target: %+v %v", h, err)
	}
	if err := jobs.AcquireTarget(ctx, newJob(t, jobs, "r9", events.KindRestore, other)); err != nil {
		t.Fatalf("a restore of another target: %v", err)
	}
	// The restore ends: the others may run.
	end(t, jobs, "r1", events.StateDone)
	if err := jobs.AcquireTarget(ctx, b3); err != nil {
		t.Fatal(err)
	}
	end(t, jobs, "b3", events.StateDone)
	if err := jobs.AcquireTarget(ctx, r2); err != nil {
		t.Fatal(err)
	}

	// A holder that ended without giving the lock back (the process died
	// between recording the end and releasing), or whose record is gone:
	// the lock is stale and taken over.
	key := jobs.JobKey("r2")
	rc, v, err := jobs.Store.ReadVersion(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var rec events.Job
	_ = json.NewDecoder(rc).Decode(&rec)
	rc.Close()
	rec.State = events.StateFailed
	b, _ := json.Marshal(rec)
	if err := jobs.Store.Replace(ctx, key, bytes.NewReader(b), v); err != nil { // behind Update's back
		t.Fatal(err)
	}
	r3 := newJob(t, jobs, "r3", events.KindRestore, target)
	if err := jobs.AcquireTarget(ctx, r3); err != nil {
		t.Fatalf("stale lock of a failed holder: %v", err)
	}
	if err := jobs.Store.Delete(ctx, jobs.JobKey("r3")); err != nil {
		t.Fatal(err)
	}
	r4 := newJob(t, jobs, "r4", events.KindRestore, target)
	if err := jobs.AcquireTarget(ctx, r4); err != nil {
		t.Fatalf("stale lock of a job that is gone: %v", err)
	}
	// A stale backup marker does not keep a restore out either.
	end(t, jobs, "r4", events.StateDone)
	b5 := newJob(t, jobs, "b5", events.KindBackup, target)
	if err := jobs.AcquireTarget(ctx, b5); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Store.Delete(ctx, jobs.JobKey("b5")); err != nil {
		t.Fatal(err)
	}
	if err := jobs.AcquireTarget(ctx, newJob(t, jobs, "r5", events.KindRestore, target)); err != nil {
		t.Fatalf("stale backup marker: %v", err)
	}
	// The lock objects sit beside the jobs, under names no job id takes.
	var keys []string
	_ = jobs.Store.List(ctx, "jobs/targets/", func(info blob.Info) error { keys = append(keys, info.Key); return nil })
	if len(keys) != 2 || !strings.HasSuffix(keys[0], "/restore") || pipeline.ValidJobID("targets") || pipeline.ValidJobID("idempotency") {
		t.Fatalf("lock objects %v", keys)
	}
}

// Restores and backups starting at once on one target: whenever a
// restore got the target, nobody else did.
func TestTargetLockRace(t *testing.T) {
	ctx := context.Background()
	for round := range 15 {
		jobs := lockJobs(t)
		var all []*events.Job
		for i := range 8 {
			kind := events.KindBackup
			if i%3 == 0 {
				kind = events.KindRestore
			}
			all = append(all, newJob(t, jobs, fmt.Sprintf("j%d", i), kind, "t"))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []*events.Job
		for _, j := range all {
			wg.Go(func() {
				if err := jobs.AcquireTarget(ctx, j); err == nil {
					mu.Lock()
					won = append(won, j)
					mu.Unlock()
				} else if !errors.Is(err, pipeline.ErrTargetBusy) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		restores := 0
		for _, j := range won {
			if j.Kind == events.KindRestore {
				restores++
			}
		}
		if restores > 0 && len(won) > 1 {
			t.Fatalf("round %d: a restore ran beside %d other jobs", round, len(won)-1)
		}
	}
}

// planner counts the plans it makes (one task each).
type planner struct {
	jobs *pipeline.Jobs
	n    atomic.Int32
}

func (p *planner) Plan(ctx context.Context, job *events.Job) error {
	p.n.Add(1)
	n, err := p.jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		return emit(events.Task{ID: pipeline.TaskID(0, "noop"), Kind: "noop", Unit: "noop"})
	})
	job.Tasks = n
	return err
}

// The engine takes the lock before planning: a restore that loses fails
// at once, naming the job in the way, without touching the target; the
// end of a job gives the target back.
func TestEngineTakesTheTargetLock(t *testing.T) {
	ctx := context.Background()
	jobs := lockJobs(t)
	p := &planner{jobs: jobs}
	dom := pipeline.Domain{Planner: p}
	eng, err := pipeline.New(pipeline.Config{Jobs: jobs, Tasks: mem.New(mem.Options{}), Target: "https://a.example",
		Domains: map[events.JobKind]pipeline.Domain{events.KindBackup: dom, events.KindRestore: dom}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := eng.Start(ctx, events.StartRequest{JobID: "backup-1", Kind: events.KindBackup, RequestedBy: "arn:aws:iam::1:user/op"})
	if err != nil || b.State == events.StateFailed || b.RequestedBy != "arn:aws:iam::1:user/op" {
		t.Fatalf("backup: %+v %v", b, err)
	}
	r, err := eng.Start(ctx, events.StartRequest{JobID: "restore-1", Kind: events.KindRestore})
	if !errors.Is(err, pipeline.ErrTargetBusy) || r == nil || r.State != events.StateFailed || p.n.Load() != 1 {
		t.Fatalf("restore beside a running backup: %+v %v (plans: %d)", r, err, p.n.Load())
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Message, "backup job backup-1 is running") {
		t.Fatalf("restore errors %+v", r.Errors)
	}
	// The backup ends (here: it fails), the restore may start.
	end(t, jobs, "backup-1", events.StateFailed)
	if r, err := eng.Start(ctx, events.StartRequest{JobID: "restore-2", Kind: events.KindRestore}); err != nil || r.State == events.StateFailed {
		t.Fatalf("restore after the backup: %+v %v", r, err)
	}
	// Resuming the failed backup needs the target too.
	if _, err := eng.Resume(ctx, "backup-1"); !errors.Is(err, pipeline.ErrTargetBusy) {
		t.Fatalf("resume beside a restore: %v", err)
	}
}
