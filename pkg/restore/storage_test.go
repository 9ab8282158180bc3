package restore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// s3Counter counts the object writes and batch deletes the emulator's S3
// endpoint serves.
type s3Counter struct {
	h       http.Handler
	puts    atomic.Int64
	deletes atomic.Int64
}

func (c *s3Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut:
		c.puts.Add(1)
	case r.Method == http.MethodPost && r.URL.Query().Has("delete"):
		c.deletes.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

// rollbackRig restores an archive of an emulator back into that same
// emulator, storage through the admin API or R2 direct (the emulator's
// S3 endpoint, the same bucket).
type rollbackRig struct {
	ctx    context.Context
	emu    *edgebasetest.Emulator
	want   []string // the storage lines of the fingerprint at backup time
	r      *restorer
	s3     *s3Counter
	direct restore.DirectStorage
	client *edgebase.Client
}

func newRollbackRig(t *testing.T, direct bool) *rollbackRig {
	t.Helper()
	ctx := testContext(t)
	emu := seeded(t)
	archive := backupOf(ctx, t, emu)
	g := &rollbackRig{ctx: ctx, emu: emu, want: storageLines(fingerprint(ctx, t, emu)), client: newClient(t, emu)}
	deps := edgevault.Deps{Client: g.client, Enum: &discovery.Enumerator{Client: g.client, StateDir: emu.StateDir()},
		OpenArchive: func(context.Context, string) (restore.Source, error) { return restore.FileSource(archive), nil },
		Restore: edgevault.RestoreOptions{RangeKeys: 25,
			DORetry: edgebase.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}}}
	if direct {
		h, _, _ := emu.S3()
		g.s3 = &s3Counter{h: h}
		srv := httptest.NewServer(g.s3)
		t.Cleanup(srv.Close)
		st, err := r2.New(r2.Config{Endpoint: srv.URL, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
			SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey), MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		deps.R2, g.direct = st, st
	}
	g.r = &restorer{runtime: newRuntime(t, deps)}
	return g
}

func storageLines(fp *edgebasetest.Fingerprint) []string {
	var out []string
	for _, l := range fp.Lines {
		if strings.HasPrefix(l, "object ") || strings.HasPrefix(l, "storage ") {
			out = append(out, l)
		}
	}
	return out
}

// change overwrites n of the archived objects with other bytes and adds
// the extra keys.
func (g *rollbackRig) change(t *testing.T, n int, extras ...string) []string {
	t.Helper()
	var changed []string
	for i, o := range edgebasetest.DemoObjects() {
		if i%50 != 7 || len(changed) == n {
			continue
		}
		if err := g.emu.AddObjects(g.ctx, edgebasetest.Object{Key: o.Key, ContentType: o.ContentType, Data: []byte("changed " + o.Key)}); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, o.Key)
	}
	if len(changed) != n {
		t.Fatalf("changed %d objects, want %d", len(changed), n)
	}
	for _, k := range extras {
		if err := g.emu.AddObjects(g.ctx, edgebasetest.Object{Key: k, Data: []byte("extra")}); err != nil {
			t.Fatal(err)
		}
	}
	g.emu.ResetRequests()
	if g.s3 != nil {
		g.s3.puts.Store(0)
		g.s3.deletes.Store(0)
	}
	return changed
}

// outcome is what a restore did to storage.
type outcome struct {
	puts, wipes, deleteCalls int
	summary                  events.Summary
}

func (g *rollbackRig) outcome(t *testing.T, job *events.Job) outcome {
	t.Helper()
	if job.State != events.StateDone {
		t.Fatalf("restore ended %s: %v", job.State, job.Errors)
	}
	o := outcome{puts: len(g.emu.RequestsTo("restore-storage:put")), wipes: len(g.emu.RequestsTo("restore-storage:wipe")), summary: *job.Summary}
	if g.s3 != nil {
		o.puts += int(g.s3.puts.Load())
		o.deleteCalls = int(g.s3.deletes.Load())
	}
	if got := storageLines(fingerprint(g.ctx, t, g.emu)); strings.Join(got, "\n") != strings.Join(g.want, "\n") {
		t.Errorf("storage differs from the archive's after the restore:\n got %d lines\nwant %d lines", len(got), len(g.want))
	}
	return o
}

func (g *rollbackRig) restore(t *testing.T, full bool) outcome {
	t.Helper()
	if _, err := g.r.engine.Start(g.ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore, Options: events.Options{FullStorage: full}}); err != nil {
		t.Fatal(err)
	}
	job, err := g.r.run(g.ctx, "restore", 4)
	if err != nil {
		t.Fatal(err)
	}
	return g.outcome(t, job)
}

var wirings = []struct {
	name   string
	direct bool
}{{"admin API", false}, {"R2 direct", true}}

// TestRollbackSkipsUnchangedObjects: a restore into a target that still
// holds the archive's objects uploads none of them again; with 1% of the
// objects changed it uploads exactly those; the report counts what was
// skipped, uploaded and deleted.
func TestRollbackSkipsUnchangedObjects(t *testing.T) {
	total := len(edgebasetest.DemoObjects())
	for _, w := range wirings {
		t.Run(w.name+"/unchanged", func(t *testing.T) {
			g := newRollbackRig(t, w.direct)
			g.change(t, 0)
			o := g.restore(t, false)
			if o.puts != 0 || o.wipes != 0 || o.deleteCalls != 0 {
				t.Errorf("%d puts, %d wipes, %d DeleteObjects calls; want none", o.puts, o.wipes, o.deleteCalls)
			}
			if s := o.summary; s.Skipped != int64(total) || s.Objects != 0 || s.Deleted != 0 {
				t.Errorf("summary: %d skipped, %d uploaded, %d deleted; want %d, 0, 0", s.Skipped, s.Objects, s.Deleted, total)
			}
		})
		t.Run(w.name+"/1% changed", func(t *testing.T) {
			g := newRollbackRig(t, w.direct)
			changed := g.change(t, 3)
			o := g.restore(t, false)
			if o.puts != len(changed) || o.wipes != 0 || o.deleteCalls != 0 {
				t.Errorf("%d puts (want %d: %q), %d wipes, %d DeleteObjects calls", o.puts, len(changed), changed, o.wipes, o.deleteCalls)
			}
			if s := o.summary; s.Skipped != int64(total-len(changed)) || s.Objects != int64(len(changed)) || s.Deleted != 0 {
				t.Errorf("summary: %d skipped, %d uploaded, %d deleted", s.Skipped, s.Objects, s.Deleted)
			}
		})
		t.Run(w.name+"/full", func(t *testing.T) {
			g := newRollbackRig(t, w.direct)
			g.change(t, 0)
			o := g.restore(t, true)
			if o.puts != total || o.summary.Skipped != 0 || o.summary.Objects != int64(total) {
				t.Errorf("--full-storage-restore: %d puts, summary %+v; want every one of %d uploaded", o.puts, o.summary, total)
			}
			if !w.direct && o.wipes != 1 {
				t.Errorf("%d wipes, want 1", o.wipes)
			}
		})
	}
}

// TestRollbackWithExtraObjects: objects the archive lacks. The admin API
// cannot delete them one by one, so the whole bucket is wiped and every
// object uploaded; R2 direct deletes exactly the extras and uploads only
// the changed objects. Internal keys stay.
func TestRollbackWithExtraObjects(t *testing.T) {
	total := len(edgebasetest.DemoObjects())
	// The first extra comes after many unchanged objects.
	extras := []string{"avatars/files/zz-extra", "uploads/files/050.dat.old", "zzz/last-extra"}
	for _, w := range wirings {
		t.Run(w.name, func(t *testing.T) {
			g := newRollbackRig(t, w.direct)
			changed := g.change(t, 2, extras...)
			o := g.restore(t, false)
			if w.direct {
				if o.puts != len(changed) || o.deleteCalls != 1 || o.summary.Deleted != int64(len(extras)) || o.summary.Skipped != int64(total-len(changed)) {
					t.Errorf("R2 direct: %d puts (want %d), %d DeleteObjects calls (want 1), summary %+v", o.puts, len(changed), o.deleteCalls, o.summary)
				}
				return
			}
			if o.wipes != 1 || o.puts != total || o.summary.Skipped != 0 || o.summary.Objects != int64(total) {
				t.Errorf("admin API: %d wipes (want 1), %d puts (want %d), summary %+v", o.wipes, o.puts, total, o.summary)
			}
			if o.summary.Deleted != int64(total+len(extras)) {
				t.Errorf("summary: %d deleted, want %d", o.summary.Deleted, total+len(extras))
			}
		})
	}
}

// TestStorageWipeCrashAndDuplicate: a delivery of the storage wipe that
// did its work and crashed before its outcome was recorded, the delivery
// that then finishes it, and a late duplicate: the target ends equal to
// the archive with the same uploads as one clean delivery.
func TestStorageWipeCrashAndDuplicate(t *testing.T) {
	for _, w := range wirings {
		for _, extra := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/extra=%v", w.name, extra), func(t *testing.T) {
				g := newRollbackRig(t, w.direct)
				var extras []string
				if extra {
					extras = []string{"m-extra"}
				}
				changed := g.change(t, 3, extras...)
				job := g.stepwise(t)
				o := g.outcome(t, job)
				wantPuts := len(changed)
				if extra && !w.direct {
					wantPuts = len(edgebasetest.DemoObjects())
				}
				if o.puts != wantPuts {
					t.Errorf("%d puts, want %d", o.puts, wantPuts)
				}
			})
		}
	}
}

// stepwise runs the restore phase by phase; the storage wipe runs once as
// a crashed delivery (its outputs never recorded), then through the
// worker, then again as a late duplicate.
func (g *rollbackRig) stepwise(t *testing.T) *events.Job {
	t.Helper()
	ctx, r := g.ctx, g.r
	job, err := r.engine.Start(ctx, events.StartRequest{JobID: "restore", Kind: events.KindRestore})
	if err != nil {
		t.Fatal(err)
	}
	crashed := (&restore.Tasks{Jobs: r.jobs, Client: g.client, Direct: g.direct}).Handlers()[events.TaskWipeStorage]
	for step := 0; !job.State.Terminal(); step++ {
		if step > 20 {
			t.Fatalf("restore stuck in phase %d", job.Phase)
		}
		for _, task := range queuetest.Drain(ctx, t, r.queue) {
			if task.Kind == events.TaskWipeStorage {
				if _, err := crashed(ctx, pipeline.Unit{Job: job, Task: task, Output: r.jobs.OutputPrefix(task.Job, task.ID, "crashed")}); err != nil {
					t.Fatalf("crashed delivery: %v", err)
				}
			}
			if err := r.engine.Worker.Process(ctx, task, 1); err != nil {
				t.Fatalf("%s: %v", task.Unit, err)
			}
			if task.Kind == events.TaskWipeStorage {
				if err := r.engine.Worker.Process(ctx, task, 2); err != nil {
					t.Fatalf("duplicate %s: %v", task.Unit, err)
				}
			}
		}
		if job, err = r.engine.Advance(ctx, "restore"); err != nil {
			t.Fatal(err)
		}
	}
	return job
}
