package crash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// Defect 1: a start whose task sends fail must not be reported as
// started with nothing queued. The first invocation of the scheduler fails
// part-way through queuing the tasks; Lambda retries it with the same
// request id; the retry finds the job running and must send what is
// missing, and the job must finish.
func TestRetriedStartSendsWhatIsMissing(t *testing.T) {
	w := getWorld(t)
	for _, wr := range []wiring{serverlessW, embedded} {
		t.Run(string(wr), func(t *testing.T) {
			r := newRig(t, w, scenario{kind: events.KindBackup, wiring: wr}, t.TempDir())
			defer r.close()
			// The first send of tasks carries one message and fails.
			r.tasks.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1, Partial: 1})
			job, err := r.run(context.Background())
			r.checkEnd(t, job, err, "a start whose sends failed part-way")
		})
	}
}

// Defect 2: a restore whose next phase was opened but only partly queued
// must not stall: the next check re-sends the phase's missing tasks.
func TestPhaseOpenedButPartlyQueuedIsSentAgain(t *testing.T) {
	w := getWorld(t)
	for _, wr := range []wiring{serverlessW, embedded} {
		t.Run(string(wr), func(t *testing.T) {
			r := newRig(t, w, scenario{kind: events.KindRestore, wiring: wr}, t.TempDir())
			defer r.close()
			// Sends, in order: the first phase's (at the start), then one
			// per phase opened: control D1, auth D1, the DB DOs (several
			// tasks): that one delivers one task and fails.
			r.tasks.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 4, Partial: 1})
			job, err := r.run(context.Background())
			if r.tasks.Count(queuetest.OpSend) < 4 {
				t.Fatalf("only %d sends: the fault never fired", r.tasks.Count(queuetest.OpSend))
			}
			r.checkEnd(t, job, err, "a phase that was opened and partly queued")
		})
	}
}

// Defect 3: two assemblies of one job at once (one presumed dead by a
// clock far ahead, which takes over its lease) must leave a done job whose
// archive matches its manifest. The first assembly's manifest write is
// held back until the second has finished, so the writes interleave as
// archive A, archive B, manifest B, done, manifest A.
func TestConcurrentAssembliesLeaveAConsistentArchive(t *testing.T) {
	w := getWorld(t)
	ctx := context.Background()
	for round := range 5 {
		dir := t.TempDir()
		base, err := fs.NewWithOptions(dir, fs.Options{NoSync: func(string) bool { return true }})
		if err != nil {
			t.Fatal(err)
		}
		store := blobtest.NewFaulty(base, false)
		c := newClient(w.src)
		q := mem.New(mem.Options{})
		engineAt := func(skew time.Duration) *pipeline.Engine {
			now := advancing()
			e, err := edgevault.New(edgevault.Deps{Store: store, Staging: staging, Archives: archives, Tasks: q, Client: c,
				Enum: &discovery.Enumerator{Client: c, StateDir: w.src.StateDir()}, Source: "docker",
				Now:    func() time.Time { return now().Add(skew) },
				Engine: pipeline.Options{FinishLease: time.Minute},
				Backup: edgevault.BackupOptions{Concurrency: 4, RangeKeys: 5, ComposeAbove: -1}})
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		a, b := engineAt(0), engineAt(time.Hour)
		id := fmt.Sprintf("backup-%d", round)
		if _, err := a.Start(ctx, events.StartRequest{JobID: id, Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
			t.Fatal(err)
		}
		for _, task := range queuetest.Drain(ctx, t, q) {
			if err := a.Worker.Process(ctx, task, 1); err != nil {
				t.Fatal(err)
			}
		}
		// A's manifest write waits until B is done; B starts once A
		// is held there.
		aHeld, bDone := make(chan struct{}), make(chan struct{})
		store.Inject(blobtest.Fault{Op: blobtest.OpPut, Nth: 1, Match: func(k string) bool { return strings.HasSuffix(k, ".manifest.json") },
			After: true, Err: nil, Hook: func(blobtest.Call) { close(aHeld); <-bDone }})
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = a.Advance(ctx, id) })
		select {
		case <-aHeld:
		case <-time.After(time.Minute):
			t.Fatalf("round %d: the first assembly never wrote its manifest", round)
		}
		jb, err := b.Advance(ctx, id)
		close(bDone)
		wg.Wait()
		if err != nil || jb.State != events.StateDone {
			t.Fatalf("round %d: the second assembly: %v %+v", round, err, jb)
		}
		job, err := a.Jobs().ReadJob(ctx, id)
		if err != nil || job.State != events.StateDone {
			t.Fatalf("round %d: job %+v %v", round, job, err)
		}
		if _, err := archive.Verify(ctx, filepath.Join(dir, filepath.FromSlash(job.Archive))); err != nil {
			t.Fatalf("round %d: the done job's archive does not match its manifest: %v", round, err)
		}
		base.Close()
	}
}

func newClient(e *edgebasetest.Emulator) *edgebase.Client {
	c, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKey: sensitive.String(e.ServiceKey())})
	if err != nil {
		panic(err)
	}
	return c
}

// Defect 4: when the write that records a job done fails, the job must
// still end done: its staging (the parts the retry assembles from) is
// deleted only once done is stored.
func TestFailedDoneWriteKeepsTheStaging(t *testing.T) {
	w := getWorld(t)
	for _, wr := range []wiring{embedded, serverlessW} {
		t.Run(string(wr), func(t *testing.T) {
			// Find the last job-record write of a clean run: the one that
			// records done.
			clean := newRig(t, w, scenario{kind: events.KindBackup, wiring: wr}, t.TempDir())
			job, err := clean.run(context.Background())
			clean.checkEnd(t, job, err, "clean run")
			replaces := 0
			for _, c := range clean.store.Calls() {
				if c.Op == blobtest.OpReplace && strings.HasSuffix(c.Key, "/job.json") {
					replaces++
				}
			}
			clean.close()

			r := newRig(t, w, scenario{kind: events.KindBackup, wiring: wr}, t.TempDir())
			defer r.close()
			r.store.Inject(blobtest.Fault{Op: blobtest.OpReplace, Nth: replaces, Match: func(k string) bool { return strings.HasSuffix(k, "/job.json") }})
			job, err = r.run(context.Background())
			if r.store.Fired() < 1 {
				t.Fatal("the fault never fired")
			}
			r.checkEnd(t, job, err, "a failed write of done")
		})
	}
}

// Defect 5: storage tasks spool within a disk budget: objects larger than
// it are streamed straight into the member, never spooled, and the spool
// never holds more than the budget, whatever the concurrency.
func TestSpoolStaysWithinItsBudget(t *testing.T) {
	ctx := context.Background()
	src := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	var objs []edgebasetest.Object
	for i := range 8 {
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("big/%d.bin", i), Size: 3 << 20, ContentType: "application/octet-stream"})
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("mid/%d.bin", i), Size: 700 << 10, ContentType: "application/octet-stream"})
	}
	if err := src.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	const budget = 2 << 20
	spool := backup.NewSpool(t.TempDir(), budget, 64<<10)
	dir := t.TempDir()
	archivePath := backupWith(t, src, dir, spool, 10)
	if _, err := archive.Verify(ctx, archivePath); err != nil {
		t.Fatal(err)
	}
	if p := spool.Peak(); p > budget || p == 0 {
		t.Fatalf("the spool held %d bytes at its peak; budget %d (and it should have been used)", p, budget)
	}
}

// backupWith runs a storage backup of src in dir through the embedded
// runner with the given spool and object concurrency; it returns the
// archive's path.
func backupWith(t *testing.T, src *edgebasetest.Emulator, dir string, spool *backup.Spool, concurrency int, baseURL ...string) string {
	t.Helper()
	ctx := context.Background()
	store, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	url := src.URL()
	if len(baseURL) > 0 {
		url = baseURL[0]
	}
	c, err := edgebase.New(edgebase.Options{BaseURL: url, ServiceKey: sensitive.String(src.ServiceKey())})
	if err != nil {
		t.Fatal(err)
	}
	q := mem.New(mem.Options{})
	e, err := edgevault.New(edgevault.Deps{Store: store, Staging: staging, Archives: archives, Tasks: q, Client: c,
		Enum: &discovery.Enumerator{Client: c, StateDir: src.StateDir()}, Source: "docker",
		Backup: edgevault.BackupOptions{Concurrency: concurrency, RangeKeys: 100, ComposeAbove: -1, Spool: spool}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(ctx, events.StartRequest{JobID: "spool", Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
		t.Fatal(err)
	}
	job, err := (&pipeline.Runner{Engine: e, Queue: q, Depth: q.Len, Concurrency: 4}).Run(ctx, "spool")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, filepath.FromSlash(job.Archive))
}

// An object listed as small that comes back larger and without a
// Content-Length (it was replaced after the listing) is not buffered in
// memory without bound: past the in-memory limit it spills to the spool.
func TestSmallObjectWithoutLengthSpills(t *testing.T) {
	ctx := context.Background()
	src := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	if err := src.AddObjects(ctx, edgebasetest.Object{Key: "grows.bin", Data: []byte("small")}); err != nil {
		t.Fatal(err)
	}
	// A proxy that drops Content-Length from object downloads and, after
	// the listing, serves the object grown to 1 MiB.
	target, _ := url.Parse(src.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var listed sync.Once
	proxy.ModifyResponse = func(resp *http.Response) error {
		switch resp.Request.URL.Query().Get("action") {
		case "list":
			listed.Do(func() {
				if err := src.AddObjects(context.Background(), edgebasetest.Object{Key: "grows.bin", Size: 1 << 20}); err != nil {
					panic(err)
				}
			})
		case "get":
			resp.Header.Del("Content-Length")
			resp.ContentLength = -1
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	spool := backup.NewSpool(t.TempDir(), 8<<20, 64<<10)
	path := backupWith(t, src, t.TempDir(), spool, 2, srv.URL)
	sum, err := archive.Verify(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if sum.StorageBytes != 1<<20 {
		t.Fatalf("the archive holds %d object bytes; want the grown object's %d", sum.StorageBytes, 1<<20)
	}
	if spool.Peak() < 1<<20 {
		t.Fatalf("the grown object was not spilled to the spool (peak %d)", spool.Peak())
	}
}

// Warnings are capped and counted, not accumulated: a range of a thousand
// objects whose keys cannot be tar paths gives a few warnings and a
// count, and the job record stays small.
func TestWarningsAreCapped(t *testing.T) {
	ctx := context.Background()
	src := edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	var objs []edgebasetest.Object
	for i := range 300 {
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("odd/%d/../%d", i, i), Data: []byte("x")})
	}
	if err := src.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	backupWith(t, src, dir, nil, 4)
	b, err := io.ReadAll(mustOpen(t, filepath.Join(dir, staging, "spool", "job.json")))
	if err != nil {
		t.Fatal(err)
	}
	var job events.Job
	if err := json.Unmarshal(b, &job); err != nil {
		t.Fatal(err)
	}
	if len(job.Warnings) > events.MaxWarnings || len(b) > 32<<10 {
		t.Fatalf("%d warnings in a %d-byte job record", len(job.Warnings), len(b))
	}
	if !strings.Contains(strings.Join(job.Warnings, "\n"), "more keys of this range") {
		t.Fatalf("the escaped keys are not summarised: %v", job.Warnings)
	}
}

func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	b, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
