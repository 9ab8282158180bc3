package backup_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	pl "github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// epoch is the fixed clock of the emulator and the job store: with it, two
// backups of unchanged data must be the same bytes.
var epoch = time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return epoch }

// pipeline is the backup pipeline wired to a directory store and an
// in-process queue, pointed at one emulator.
type pipeline struct {
	jobs   *pl.Jobs
	queue  *mem.Queue
	engine *pl.Engine
	client *edgebase.Client
	dir    string
}

func newPipeline(t *testing.T, emu *edgebasetest.Emulator, rangeKeys int) *pipeline {
	t.Helper()
	return newPipelineWith(t, emu, func(o *edgevault.BackupOptions) {
		o.RangeKeys, o.Spool = rangeKeys, backup.NewSpool(t.TempDir(), 0, 4<<10)
	})
}

// newPipelineWith is the pipeline on the emulator with the backup options
// set by opts (on top of concurrency 4 and no composing).
func newPipelineWith(t *testing.T, emu *edgebasetest.Emulator, opts func(*edgevault.BackupOptions)) *pipeline {
	t.Helper()
	dir := t.TempDir()
	store, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	client := newClient(t, emu)
	q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
	bo := edgevault.BackupOptions{Concurrency: 4, ComposeAbove: -1}
	opts(&bo)
	engine, err := edgevault.New(edgevault.Deps{Store: store, Staging: "staging/", Archives: "archives/", Tasks: q,
		Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: emu.StateDir()}, Source: "docker", Now: fixedNow,
		Engine: pl.Options{MaxAttempts: 3, Backoff: pl.Backoff{Base: time.Millisecond}},
		Backup: bo})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline{jobs: engine.Jobs(), queue: q, engine: engine, client: client, dir: dir}
}

func (p *pipeline) start(ctx context.Context, t *testing.T, id string) *events.Job {
	t.Helper()
	job, err := p.engine.Start(ctx, events.StartRequest{JobID: id, Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// runNormally drives the job with the embedded runner.
func (p *pipeline) runNormally(ctx context.Context, t *testing.T, id string) *events.Job {
	t.Helper()
	p.start(ctx, t, id)
	r := &pl.Runner{Engine: p.engine, Queue: p.queue, Depth: p.queue.Len, Concurrency: 4}
	job, err := r.Run(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// deliver runs tasks through the worker, all at once (bounded), as an
// at-least-once queue might hand them to concurrent workers.
func (p *pipeline) deliver(ctx context.Context, t *testing.T, tasks []events.Task) {
	t.Helper()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, task := range tasks {
		g.Go(func() error {
			for attempt := 1; ; attempt++ {
				err := p.engine.Worker.Process(gctx, task, attempt)
				if err == nil || attempt == 3 {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func (p *pipeline) archive(ctx context.Context, t *testing.T, key string) []byte {
	t.Helper()
	rc, err := p.jobs.Store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newClient is a client of emu with fast retries whose connections are
// closed before the emulator shuts down.
func newClient(t *testing.T, emu *edgebasetest.Emulator) *edgebase.Client {
	t.Helper()
	hc := &http.Client{Transport: edgebase.DefaultTransport()}
	t.Cleanup(hc.CloseIdleConnections)
	client, err := edgebase.New(edgebase.Options{BaseURL: emu.URL(), ServiceKey: sensitive.String(emu.ServiceKey()), HTTPClient: hc,
		Retry: edgebase.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func seededEmulator(t *testing.T) *edgebasetest.Emulator {
	t.Helper()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, StateDir: t.TempDir()})
	if _, err := emu.SeedDemo(context.Background()); err != nil {
		t.Fatal(err)
	}
	return emu
}

// dumpRequests counts the emulator's requests that read data.
func dumpRequests(emu *edgebasetest.Emulator) int {
	n := 0
	for _, r := range emu.Requests() {
		switch r.Endpoint {
		case "dump-do", "dump-d1", "dump-control-d1", "dump-data", "dump-storage:get", "config":
			n++
		}
	}
	return n
}

// TestRedeliveryIsByteIdentical: delivering every task twice, shuffled and
// concurrently, gives the same archive bytes as delivering each once; and
// a task delivered again after it finished (or after the job finished)
// changes nothing and sends nothing to the server.
func TestRedeliveryIsByteIdentical(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	emu := seededEmulator(t)
	// A first backup warms every DO: a cold start moves _meta.doName to the
	// last row (as on the peer), which would make the first dump differ.
	newPipeline(t, emu, 1000).runNormally(ctx, t, "warm-up")

	normal := newPipeline(t, emu, 40)
	done := normal.runNormally(ctx, t, "job-1")
	want := normal.archive(ctx, t, done.Archive)
	wantManifest := normal.archive(ctx, t, done.Manifest)

	dup := newPipeline(t, emu, 40)
	job := dup.start(ctx, t, "job-1")
	tasks := queuetest.Drain(ctx, t, dup.queue)
	if len(tasks) != job.Tasks || len(tasks) < 10 {
		t.Fatalf("queued %d tasks, plan has %d; want every task of the plan (>= 10)", len(tasks), job.Tasks)
	}
	twice := append(append([]events.Task(nil), tasks...), tasks...)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(twice), func(i, j int) { twice[i], twice[j] = twice[j], twice[i] })
	dup.deliver(ctx, t, twice)

	// Every task is done now; running any of them again is a no-op.
	before := dumpRequests(emu)
	dup.deliver(ctx, t, tasks)
	if n := dumpRequests(emu) - before; n != 0 {
		t.Errorf("re-running finished tasks sent %d requests; want none", n)
	}

	final, err := dup.engine.Advance(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if final.State != events.StateDone {
		t.Fatalf("job state %s after every task ran; want done (errors %v)", final.State, final.Errors)
	}
	got := dup.archive(ctx, t, final.Archive)
	if final.Archive != done.Archive {
		t.Errorf("archive key %s, want %s", final.Archive, done.Archive)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("archives differ: %d bytes vs %d bytes", len(got), len(want))
	}
	if m := dup.archive(ctx, t, final.Manifest); !bytes.Equal(m, wantManifest) {
		t.Errorf("manifests differ:\n%s\n%s", m, wantManifest)
	}

	// Deliveries after the job finished are dropped without work, and the
	// staging area stays deleted.
	before = dumpRequests(emu)
	dup.deliver(ctx, t, tasks)
	if n := dumpRequests(emu) - before; n != 0 {
		t.Errorf("tasks of a finished job sent %d requests; want none", n)
	}
	if !bytes.Equal(dup.archive(ctx, t, final.Archive), want) {
		t.Error("the archive changed after late deliveries")
	}
	staged := 0
	err = dup.jobs.Store.List(ctx, dup.jobs.StagingKey("job-1", "parts")+"/", func(blob.Info) error { staged++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if staged != 0 {
		t.Errorf("%d staging parts exist after late deliveries; want none", staged)
	}
	if _, err := archive.Verify(ctx, filepath.Join(dup.dir, filepath.FromSlash(final.Archive))); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// TestArchiveNameCollision: names have one-second resolution, so jobs
// started in the same second want the same name. The later one takes the
// next free second instead of failing after all its work, and a file that
// is already there is never overwritten.
func TestArchiveNameCollision(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	emu := seededEmulator(t)
	p := newPipeline(t, emu, 1000)
	foreign := p.jobs.ArchiveKey(archive.FileName(epoch, true))
	if err := p.jobs.Store.Put(ctx, foreign, bytes.NewReader([]byte("not ours"))); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, id := range []string{"job-a", "job-b", "job-c"} {
		job := p.runNormally(ctx, t, id)
		names = append(names, job.Archive)
		if _, err := archive.Verify(ctx, filepath.Join(p.dir, filepath.FromSlash(job.Archive))); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	want := []string{
		p.jobs.ArchiveKey(archive.FileName(epoch.Add(time.Second), true)),
		p.jobs.ArchiveKey(archive.FileName(epoch.Add(2*time.Second), true)),
		p.jobs.ArchiveKey(archive.FileName(epoch.Add(3*time.Second), true)),
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("archive names %v; want %v", names, want)
			break
		}
	}
	if b := p.archive(ctx, t, foreign); string(b) != "not ours" {
		t.Errorf("the file already under the first name was overwritten")
	}
	// Assembling a job again (a redelivered check) keeps its own name.
	rc, err := p.jobs.Store.Get(ctx, p.jobs.Staging+"names/"+filepath.Base(want[0]))
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := io.ReadAll(rc)
	rc.Close()
	if string(owner) != "job-a" {
		t.Errorf("name %s is held by %q; want job-a", want[0], owner)
	}
}
