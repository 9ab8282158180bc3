package restore_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newClient is a client of emu with fast retries whose connections are
// closed before the emulator shuts down.
func newClient(t *testing.T, emu *edgebasetest.Emulator) *edgebase.Client {
	t.Helper()
	hc := &http.Client{Transport: edgebase.DefaultTransport()}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := edgebase.New(edgebase.Options{BaseURL: emu.URL(), ServiceKey: sensitive.String(emu.ServiceKey()), HTTPClient: hc,
		Retry: edgebase.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runtime is the embedded pipeline over a directory.
type runtime struct {
	dir    string
	jobs   *pipeline.Jobs
	queue  *mem.Queue
	engine *pipeline.Engine
}

func newRuntime(t *testing.T, d edgevault.Deps) *runtime {
	t.Helper()
	dir := t.TempDir()
	store, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
	d.Store, d.Staging, d.Archives, d.Tasks, d.Source = store, "staging/", "archives/", q, "docker"
	d.Engine = pipeline.Options{MaxAttempts: 2, Backoff: pipeline.Backoff{Base: time.Millisecond}}
	engine, err := edgevault.New(d)
	if err != nil {
		t.Fatal(err)
	}
	return &runtime{dir: dir, jobs: engine.Jobs(), queue: q, engine: engine}
}

func (r *runtime) run(ctx context.Context, id string, concurrency int) (*events.Job, error) {
	return (&pipeline.Runner{Engine: r.engine, Queue: r.queue, Depth: r.queue.Len, Concurrency: concurrency}).Run(ctx, id)
}

// backupOf backs up emu (with storage) and returns the archive's path.
func backupOf(ctx context.Context, t *testing.T, emu *edgebasetest.Emulator) string {
	t.Helper()
	client := newClient(t, emu)
	rt := newRuntime(t, edgevault.Deps{Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: emu.StateDir()},
		Backup: edgevault.BackupOptions{Concurrency: 4, ComposeAbove: -1}})
	if _, err := rt.engine.Start(ctx, events.StartRequest{JobID: "backup", Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
		t.Fatal(err)
	}
	job, err := rt.run(ctx, "backup", 4)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(rt.dir, filepath.FromSlash(job.Archive))
}

// restorer is a restore runtime pointed at one target.
type restorer struct {
	*runtime
}

func newRestorer(t *testing.T, dst *edgebasetest.Emulator, archive string, rangeKeys int, conc restore.Concurrency, chunkBytes ...int64) *restorer {
	t.Helper()
	client := newClient(t, dst)
	opts := edgevault.RestoreOptions{Concurrency: conc, RangeKeys: rangeKeys,
		DORetry: edgebase.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}}
	if len(chunkBytes) > 0 {
		opts.ChunkBytes = chunkBytes[0]
	}
	rt := newRuntime(t, edgevault.Deps{Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: dst.StateDir()},
		OpenArchive: func(context.Context, string) (restore.Source, error) { return restore.FileSource(archive), nil },
		Restore:     opts})
	return &restorer{runtime: rt}
}

func fingerprint(ctx context.Context, t *testing.T, e *edgebasetest.Emulator, instances ...string) *edgebasetest.Fingerprint {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	fp, err := edgebasetest.TakeFingerprint(ctx, e.URL(), edgebasetest.FingerprintOptions{ServiceKey: e.ServiceKey(), Instances: instances, Client: hc})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func seeded(t *testing.T) *edgebasetest.Emulator {
	t.Helper()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	if _, err := emu.SeedDemo(context.Background()); err != nil {
		t.Fatal(err)
	}
	return emu
}

// peakInFlight bounds from below how many of the calls were in flight at
// once: each takes at least latency, so every call starting within
// latency after another's start overlaps with it.
func peakInFlight(starts []time.Time, latency time.Duration) int {
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	peak := 0
	for i := range starts {
		n := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < latency; j++ {
			n++
		}
		peak = max(peak, n)
	}
	return peak
}

// TestPutConcurrencyAcrossRanges: the storage put limit holds for the
// whole restore, not per page range: many ranges run as parallel tasks
// (spec 9.32: 5 puts, or the configured limit).
func TestPutConcurrencyAcrossRanges(t *testing.T) {
	ctx := testContext(t)
	src := seeded(t)
	archive := backupOf(ctx, t, src)
	dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	const latency = 50 * time.Millisecond
	slow := func(r edgebasetest.Request) bool { return strings.HasPrefix(r.Fields["key"], "uploads/files/0") }
	dst.SetFault("restore-storage:put", edgebasetest.Fault{Latency: latency, Match: slow})

	r := newRestorer(t, dst, archive, 10, restore.Concurrency{Objects: 3, DOs: 10})
	if _, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.run(ctx, "restore", 10); err != nil {
		t.Fatal(err)
	}
	var starts []time.Time
	puts := dst.RequestsTo("restore-storage:put")
	for _, q := range puts {
		if slow(q) {
			starts = append(starts, q.Time)
		}
	}
	if len(puts) != len(edgebasetest.DemoObjects()) {
		t.Fatalf("%d puts, want %d", len(puts), len(edgebasetest.DemoObjects()))
	}
	peak := peakInFlight(starts, latency)
	t.Logf("%d slowed puts across %d ranges; at least %d in flight at once", len(starts), (len(starts)+9)/10, peak)
	if peak > 3 {
		t.Errorf("%d puts in flight at once; the limit is 3", peak)
	}
	want, got := fingerprint(ctx, t, src), fingerprint(ctx, t, dst)
	var w, g []string
	for _, l := range want.Lines {
		if strings.HasPrefix(l, "object ") || strings.HasPrefix(l, "storage ") {
			w = append(w, l)
		}
	}
	for _, l := range got.Lines {
		if strings.HasPrefix(l, "object ") || strings.HasPrefix(l, "storage ") {
			g = append(g, l)
		}
	}
	if strings.Join(w, "\n") != strings.Join(g, "\n") {
		t.Errorf("storage differs after the restore:\n%s", edgebasetest.Diff(want, got))
	}
}

func writesTo(e *edgebasetest.Emulator) int {
	n := 0
	for _, q := range e.Requests() {
		switch {
		case strings.HasPrefix(q.Endpoint, "restore-"), q.Endpoint == "wipe-do", q.Endpoint == "resync-users-public":
			n++
		}
	}
	return n
}

// TestLateWipeIsFenced: a duplicate of a wiping task delivered after its
// phase closed is refused without a request (spec 2.17, 9.33), and so is
// any task of a closed phase; the restore still converges.
func TestLateWipeIsFenced(t *testing.T) {
	ctx := testContext(t)
	src := seeded(t)
	archive := backupOf(ctx, t, src)
	dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	if err := dst.AddRows(ctx, "workspace:ws-orphan", "tasks", edgebasetest.Row{"title": "orphan"}); err != nil {
		t.Fatal(err)
	}
	// An object the archive lacks: the admin API must wipe.
	if err := dst.AddObjects(ctx, edgebasetest.Object{Key: "stale/extra.txt", Data: []byte("stale")}); err != nil {
		t.Fatal(err)
	}
	r := newRestorer(t, dst, archive, 50, restore.Concurrency{})
	job, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[events.TaskKind][]events.Task{}
	var late []events.Task // tasks of closed phases, redelivered later
	for step := 0; !job.State.Terminal(); step++ {
		if step > 20 {
			t.Fatalf("restore did not finish; stuck in phase %d", job.Phase)
		}
		tasks := queuetest.Drain(ctx, t, r.queue)
		for _, task := range late {
			before := writesTo(dst)
			if err := r.engine.Worker.Process(ctx, task, 1); err != nil {
				t.Errorf("late %s in phase %s: %v", task.Kind, restore.PhaseName(job.Phase), err)
			}
			if n := writesTo(dst) - before; n != 0 {
				t.Errorf("late %s (phase %s) ran in phase %s: %d writes", task.Kind, restore.PhaseName(task.Phase), restore.PhaseName(job.Phase), n)
			}
		}
		for _, task := range tasks {
			if task.Phase != job.Phase {
				t.Errorf("task %s of phase %d queued while phase %d is open", task.ID, task.Phase, job.Phase)
			}
			seen[task.Kind] = append(seen[task.Kind], task)
			if err := r.engine.Worker.Process(ctx, task, 1); err != nil {
				t.Fatalf("%s: %v", task.Unit, err)
			}
			late = append(late, task)
		}
		if job, err = r.engine.Advance(ctx, "restore"); err != nil {
			t.Fatal(err)
		}
	}
	if job.State != events.StateDone {
		t.Fatalf("restore ended %s: %v", job.State, job.Errors)
	}
	for _, k := range []events.TaskKind{events.TaskRestoreControlD1, events.TaskRestoreAuthD1, events.TaskWipeDO, events.TaskRestoreDO, events.TaskRestoreData, events.TaskWipeStorage, events.TaskPutStorage, events.TaskResync} {
		if len(seen[k]) == 0 {
			t.Errorf("no %s task ran", k)
		}
	}
	if n := len(dst.RequestsTo("restore-storage:wipe")); n != 1 {
		t.Errorf("%d storage wipes; want exactly 1", n)
	}
	if n := len(dst.RequestsTo("wipe-do")); n != 1 {
		t.Errorf("%d wipe-do calls; want exactly 1 (the orphan)", n)
	}
	want, got := fingerprint(ctx, t, src, edgebasetest.DemoInstances...), fingerprint(ctx, t, dst, edgebasetest.DemoInstances...)
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Errorf("target differs from the source:\n%s", d)
	}
}

// TestChunkedRestoreConverges: D1 restores larger than the chunk size go
// as one wiping call followed by skipWipe calls per chunk of rows, and
// give the same data as single calls (spec 2.8, 9.9); a DO with an FTS5
// index restores without its index rows duplicated.
func TestChunkedRestoreConverges(t *testing.T) {
	ctx := testContext(t)
	cfg := edgebasetest.ContractConfig()
	src := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir(), Config: &cfg})
	if _, err := src.SeedDemo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.AddRows(ctx, "search", "notes",
		edgebasetest.Row{"id": "n1", "title": "alpha", "body": "first note"},
		edgebasetest.Row{"id": "n2", "title": "beta", "body": "second note"}); err != nil {
		t.Fatal(err)
	}
	archive := backupOf(ctx, t, src)
	dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir(), Config: &cfg})
	if err := dst.AddRows(ctx, "shared", "posts", edgebasetest.Row{"id": "stale", "title": "must go"}); err != nil {
		t.Fatal(err)
	}
	r := newRestorer(t, dst, archive, 0, restore.Concurrency{}, 600)
	if _, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.run(ctx, "restore", 4); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"restore-d1", "restore-data"} {
		var wipes, chunks int
		for _, q := range dst.RequestsTo(ep) {
			if q.Fields["skipWipe"] == "true" {
				chunks++
			} else {
				wipes++
			}
		}
		if wipes != 1 || chunks < 2 {
			t.Errorf("%s: %d wiping calls and %d chunks; want 1 and several", ep, wipes, chunks)
		}
	}
	want, got := fingerprint(ctx, t, src, edgebasetest.DemoInstances...), fingerprint(ctx, t, dst, edgebasetest.DemoInstances...)
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Errorf("target differs from the source:\n%s", d)
	}
	var ftsRows []string
	for _, q := range dst.RequestsTo("restore-do") {
		if q.Fields["doName"] == "search" {
			ftsRows = append(ftsRows, q.Fields["tables"])
		}
	}
	if len(ftsRows) != 1 || strings.Contains(ftsRows[0], "notes_fts") || !strings.Contains(ftsRows[0], "notes") {
		t.Errorf("restore-do of search sent tables %v; want notes without notes_fts", ftsRows)
	}
}

// TestTasksReadTheConfigThePlannerRead: the target's config is read once,
// by the planner; prime and restore-data take it from the plan (a GET
// right after a large restore-do can hang on a local server).
func TestTasksReadTheConfigThePlannerRead(t *testing.T) {
	ctx := testContext(t)
	src := seeded(t)
	archive := backupOf(ctx, t, src)
	dst := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	r := newRestorer(t, dst, archive, 0, restore.Concurrency{})
	if _, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.run(ctx, "restore", 4); err != nil {
		t.Fatal(err)
	}
	if n := len(dst.RequestsTo("restore-data")); n == 0 {
		t.Fatal("no restore-data request: the archive has no data namespace to test with")
	}
	if n := len(dst.RequestsTo("config")); n != 1 {
		t.Errorf("%d config requests, want 1 (the planner's)", n)
	}
	want, got := fingerprint(ctx, t, src, edgebasetest.DemoInstances...), fingerprint(ctx, t, dst, edgebasetest.DemoInstances...)
	if d := edgebasetest.Diff(want, got); d != "" {
		t.Errorf("target differs from the source:\n%s", d)
	}
}
