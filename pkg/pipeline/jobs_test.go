package pipeline_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// TestUpdateNeverLosesAnUpdate: writers racing on one record through
// Update each get their change in.
func TestUpdateNeverLosesAnUpdate(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning})
	const n = 16
	var runs atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := e.jobs.Update(ctx, "j", func(j *events.Job) error {
				runs.Add(1)
				j.Check++
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	job := e.job(ctx, t, "j")
	if job.Check != n || job.Revision != n {
		t.Fatalf("check %d revision %d after %d concurrent increments (%d change runs); want %d", job.Check, job.Revision, n, runs.Load(), n)
	}
}

// TestUpdateRetriesAfterAConflictingWriter: a writer that comes in
// between Update's read and its write makes Update read again and run
// its change on the newer record; both changes survive.
func TestUpdateRetriesAfterAConflictingWriter(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning})
	runs := 0
	var seen []int
	job, err := e.jobs.Update(ctx, "j", func(j *events.Job) error {
		runs++
		seen = append(seen, j.Revision)
		if runs == 1 {
			if _, err := e.jobs.Update(ctx, "j", func(j *events.Job) error { j.AddWarnings("from the other writer"); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		j.Check = 7
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 || !slices.Equal(seen, []int{0, 1}) {
		t.Fatalf("change ran %d times on revisions %v; want twice, the second time on the other writer's record", runs, seen)
	}
	stored := e.job(ctx, t, "j")
	if stored.Check != 7 || !slices.Equal(stored.Warnings, []string{"from the other writer"}) || stored.Revision != 2 || job.Revision != 2 {
		t.Fatalf("stored %+v, returned revision %d; want both changes, revision 2", stored, job.Revision)
	}
	if e.calls(blobtest.OpReplace, "j/job.json") != 3 {
		t.Fatalf("%d replaces, want 3 (the other writer's, a lost one, the retry)", e.calls(blobtest.OpReplace, "j/job.json"))
	}
}

func TestUpdateNoChangeAndErrors(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, Check: 3})
	version := func() blob.Version {
		rc, v, err := e.store.ReadVersion(ctx, e.jobs.JobKey("j"))
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		return v
	}
	before := version()
	job, err := e.jobs.Update(ctx, "j", func(*events.Job) error { return pipeline.ErrNoChange })
	if err != nil || job.Check != 3 || job.Revision != 0 {
		t.Fatalf("ErrNoChange: %+v %v; want the record as read, no error", job, err)
	}
	if version() != before {
		t.Fatal("ErrNoChange wrote the record")
	}
	boom := errors.New("boom")
	if _, err := e.jobs.Update(ctx, "j", func(*events.Job) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("a failing change returned %v, want its error", err)
	}
	if version() != before {
		t.Fatal("a failing change wrote the record")
	}
	if _, err := e.jobs.Update(ctx, "nope", func(*events.Job) error { return nil }); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("missing job: %v", err)
	}
	// A store error other than a lost race is not retried.
	e.store.Inject(blobtest.Fault{Op: blobtest.OpReplace, Nth: 1})
	if _, err := e.jobs.Update(ctx, "j", func(j *events.Job) error { j.Check++; return nil }); !errors.Is(err, blobtest.ErrInjected) {
		t.Fatalf("store failure: %v", err)
	}
	if n := e.calls(blobtest.OpReplace, "j/job.json"); n != 1 {
		t.Fatalf("%d replaces, want 1 (no retry of a failure that is not a conflict)", n)
	}
}

// TestOutcomeQueries: CountDone counts one phase's outcomes by listing,
// Failures counts and reads the first few, EachDone reads every outcome.
func TestOutcomeQueries(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.fake.run = func(_ context.Context, u pipeline.Unit) (pipeline.Result, error) {
		if u.Task.Unit == "unit-4" || u.Task.Unit == "unit-7" {
			return pipeline.Result{}, pipeline.Permanent(errors.New("refused " + u.Task.Unit))
		}
		return pipeline.Result{Rows: int64(len(u.Task.Unit)), Warnings: []string{"w " + u.Task.Unit}}, nil
	}
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, PhaseTasks: []int{4, 3}, Tasks: 7})
	process := func(seq, phase int) {
		err := e.eng.Worker.Process(ctx, task("j", seq, phase), 1)
		if failed := seq == 4 || seq == 7; failed != errors.Is(err, pipeline.ErrTaskFailed) {
			t.Fatalf("task %d: %v", seq, err)
		}
	}
	for seq := 1; seq <= 4; seq++ {
		process(seq, 0)
	}
	if _, err := e.jobs.Update(ctx, "j", func(j *events.Job) error { j.Phase = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	for seq := 5; seq <= 7; seq++ {
		process(seq, 1)
	}

	reads := e.calls(blobtest.OpGet, "/done/")
	for phase, want := range []int{3, 2, 0} {
		if n, err := e.jobs.CountDone(ctx, "j", phase); err != nil || n != want {
			t.Errorf("CountDone(phase %d) = %d, %v; want %d", phase, n, err, want)
		}
	}
	if e.calls(blobtest.OpGet, "/done/") != reads {
		t.Error("CountDone read outcomes; it must only list them")
	}

	n, first, err := e.jobs.Failures(ctx, "j", 1)
	if err != nil || n != 2 || len(first) != 1 || first[0].Unit != "unit-4" || first[0].State != events.TaskFailed {
		t.Errorf("Failures(max 1) = %d %+v %v; want 2, the first (unit-4) read", n, first, err)
	}
	n, first, err = e.jobs.Failures(ctx, "j", 10)
	if err != nil || n != 2 || len(first) != 2 || first[1].Error != "refused unit-7" {
		t.Errorf("Failures(max 10) = %d %+v %v", n, first, err)
	}
	if n, _, err := e.jobs.Failures(ctx, "nope", 10); err != nil || n != 0 {
		t.Errorf("Failures of an unknown job = %d, %v", n, err)
	}

	var units []string
	var rows int64
	err = e.jobs.EachDone(ctx, "j", func(st events.TaskStatus) error {
		units = append(units, st.Unit)
		rows += st.Rows
		if st.State != events.TaskDone || len(st.Warnings) != 1 || st.Output == "" {
			t.Errorf("outcome %+v", st)
		}
		return nil
	})
	slices.Sort(units)
	if err != nil || !slices.Equal(units, []string{"unit-1", "unit-2", "unit-3", "unit-5", "unit-6"}) || rows != 5*6 {
		t.Errorf("EachDone saw %v (rows %d), %v", units, rows, err)
	}
	stop := errors.New("stop")
	calls := 0
	if err := e.jobs.EachDone(ctx, "j", func(events.TaskStatus) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("EachDone with a failing fn: %v after %d calls; want its error after one", err, calls)
	}
}

// TestListIndex: jobs of a kind are listed newest first, a page at a time
// from an opaque cursor; a job whose record is gone is skipped by
// ListJobs.
func TestListIndex(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	for i, id := range []string{"old", "mid", "new"} {
		e.createJob(ctx, t, events.Job{ID: id, State: events.StateRunning, CreatedAt: epoch.Add(time.Duration(i) * time.Hour)})
	}
	e.createJob(ctx, t, events.Job{ID: "r1", Kind: events.KindRestore, State: events.StateRunning, CreatedAt: epoch.Add(5 * time.Hour)})

	type entry struct{ cursor, id string }
	list := func(after string, limit int) []entry {
		var out []entry
		err := e.jobs.ListIndex(ctx, events.KindBackup, after, func(c, id string) bool {
			out = append(out, entry{c, id})
			return len(out) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	idsOf := func(es []entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.id)
		}
		return out
	}
	all := list("", 100)
	if got := idsOf(all); !slices.Equal(got, []string{"new", "mid", "old"}) {
		t.Fatalf("listing %v, want newest first, backups only", got)
	}
	page := list("", 2)
	if got := idsOf(page); !slices.Equal(got, []string{"new", "mid"}) {
		t.Fatalf("first page %v", got)
	}
	if got := idsOf(list(page[1].cursor, 2)); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("second page %v", got)
	}
	if got := list(all[2].cursor, 2); len(got) != 0 {
		t.Fatalf("past the end: %v", got)
	}

	if err := e.store.Delete(ctx, e.jobs.JobKey("mid")); err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := e.jobs.ListJobs(ctx, func(j *events.Job) error { listed = append(listed, j.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []string{"new", "old", "r1"}) {
		t.Fatalf("ListJobs = %v, want backups newest first then restores, without the expired one", listed)
	}
}

// TestCreateJobOnce: a second CreateJob of an id fails with blob.ErrExist
// and leaves the first record.
func TestCreateJobOnce(t *testing.T) {
	ctx := testContext(t)
	e := newEnv(t, setup{})
	e.createJob(ctx, t, events.Job{ID: "j", State: events.StateRunning, Tasks: 1})
	err := e.jobs.CreateJob(ctx, &events.Job{ID: "j", Kind: events.KindBackup, State: events.StatePlanned})
	if !errors.Is(err, blob.ErrExist) || e.job(ctx, t, "j").Tasks != 1 {
		t.Fatalf("second create: %v", err)
	}
}
