package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	pl "github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/r2"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/sensitive"
)

// repoOptions make small chunks and packs, so a demo backup spans many.
var repoOptions = repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1, MinChunk: 64 << 10, MaxChunk: 256 << 10, PackSize: 256 << 10}

// newRepoPipeline is newPipeline in repository mode: every backup ends in
// a snapshot of repo.
func newRepoPipeline(t *testing.T, emu *edgebasetest.Emulator, rangeKeys int, repo *repository.Repository) *pipeline {
	t.Helper()
	return newPipelineWith(t, emu, func(o *edgevault.BackupOptions) {
		o.RangeKeys, o.Version = rangeKeys, "test"
		o.Repo = func(context.Context) (*repository.Repository, error) { return repo, nil }
	})
}

func newRepo(t *testing.T) (*repository.Repository, *fs.Store) {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := repository.Init(context.Background(), st, "pw", repoOptions)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// backupJSON is the backup.json of an archive (.json or .tar.gz).
func backupJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return b // a .json archive
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != "backup.json" {
		t.Fatalf("first tar entry %v, %v", h, err)
	}
	doc, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// checkSnapshot checks the repository and that snapshot id exports to
// the document of the archive, with every object's bytes as recorded.
func checkSnapshot(ctx context.Context, t *testing.T, st *fs.Store, id string, wantDoc []byte) *repository.Snapshot {
	t.Helper()
	r, err := repository.Open(ctx, st, "pw")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(ctx, true, 100)
	if err != nil || len(rep.Errors) > 0 {
		t.Fatalf("check: %v %v", err, rep.Errors)
	}
	sid, err := repository.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.LoadSnapshot(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	if err := r.Export(ctx, snap, &doc, archive.JSON); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc.Bytes(), wantDoc) {
		t.Fatalf("the snapshot's document (%d bytes) differs from the archive's (%d bytes)", doc.Len(), len(wantDoc))
	}
	err = r.ReadTable(ctx, snap.Storage, func(e repository.StorageEntry) error {
		h := sha256.New()
		if err := r.LoadStream(ctx, e.Chunks, h); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
			t.Errorf("%s: stored bytes hash to %s, recorded %s", e.Key, got, e.SHA256)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// A repository backup through the pipeline makes a snapshot whose export
// is the document an archive backup of the same data writes; the next one,
// after a change, reuses its parent's unchanged objects without reading
// them and still exports equal to the archive of the new state.
func TestRepositoryBackupEqualsArchive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	emu := seededEmulator(t)
	newPipeline(t, emu, 1000).runNormally(ctx, t, "warm-up")
	repo, st := newRepo(t)

	var parent string
	for round := range 2 {
		if round == 1 {
			if err := emu.AddObjects(ctx, edgebasetest.Object{Key: "avatars/zz-new.bin", ContentType: "application/octet-stream", Size: 300 << 10},
				edgebasetest.Object{Key: edgebasetest.DemoObjects()[7].Key, ContentType: "text/plain", Data: []byte("changed")}); err != nil {
				t.Fatal(err)
			}
			if err := emu.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "round-2", "amount": 2.5}); err != nil {
				t.Fatal(err)
			}
		}
		arch := newPipeline(t, emu, 40)
		done := arch.runNormally(ctx, t, "archive")
		wantDoc := backupJSON(t, arch.archive(ctx, t, done.Archive))

		p := newRepoPipeline(t, emu, 40, repo)
		before := storageGets(emu)
		job := p.runNormally(ctx, t, "snap")
		gets := storageGets(emu) - before
		if job.State != events.StateDone || job.Snapshot == "" || job.Archive != "" || !job.Options.Repository {
			t.Fatalf("round %d: job %s snapshot %q archive %q repository %v (%v)", round, job.State, job.Snapshot, job.Archive, job.Options.Repository, job.Errors)
		}
		snap := checkSnapshot(ctx, t, st, job.Snapshot, wantDoc)
		if snap.Parent.String() != parent && !(parent == "" && snap.Parent.IsZero()) {
			t.Errorf("round %d: parent %s, want %s", round, snap.Parent, parent)
		}
		t.Logf("round %d: %d objects, %d read from storage", round, snap.Storage.Objects, gets)
		if round == 0 && gets != int(snap.Storage.Objects) {
			t.Errorf("first backup read %d objects of %d", gets, snap.Storage.Objects)
		}
		if round == 1 && (gets != 2 || snap.Storage.Objects != 241) {
			t.Errorf("second backup read %d objects of %d; want only the new and the changed one of 241", gets, snap.Storage.Objects)
		}
		parent = job.Snapshot
	}
}

func storageGets(emu *edgebasetest.Emulator) int {
	n := 0
	for _, r := range emu.Requests() {
		if r.Endpoint == "dump-storage:get" {
			n++
		}
	}
	return n
}

// Every task delivered twice, shuffled and concurrently: one snapshot,
// equal to a clean run's, and the packs of the superseded deliveries are
// unindexed garbage (a check reports them, nothing names them).
func TestRepositoryRedeliveredTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	emu := seededEmulator(t)
	newPipeline(t, emu, 1000).runNormally(ctx, t, "warm-up")
	arch := newPipeline(t, emu, 40)
	done := arch.runNormally(ctx, t, "archive")
	wantDoc := backupJSON(t, arch.archive(ctx, t, done.Archive))

	repo, st := newRepo(t)
	p := newRepoPipeline(t, emu, 40, repo)
	job := p.start(ctx, t, "snap")
	tasks := queuetest.Drain(ctx, t, p.queue)
	if len(tasks) != job.Tasks {
		t.Fatalf("queued %d of %d tasks", len(tasks), job.Tasks)
	}
	twice := append(append([]events.Task(nil), tasks...), tasks...)
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(twice), func(i, j int) { twice[i], twice[j] = twice[j], twice[i] })
	p.deliver(ctx, t, twice)
	final, err := p.engine.Advance(ctx, "snap")
	if err != nil || final.State != events.StateDone {
		t.Fatalf("advance: %v %v", err, final)
	}
	// A check message delivered again after the end changes nothing.
	if again, err := p.engine.Advance(ctx, "snap"); err != nil || again.Snapshot != final.Snapshot {
		t.Fatalf("advance again: %v %v", err, again)
	}
	checkSnapshot(ctx, t, st, final.Snapshot, wantDoc)
	snaps, err := repo.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("%d snapshots, %v; want 1", len(snaps), err)
	}
}

// Through R2 direct the planner stores only key bounds per range, and the
// parent's entries of the range's unchanged objects beside them: the
// worker re-lists its range and reads only what changed.
func TestRepositoryBackupR2Direct(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, StateDir: t.TempDir()})
	var objs []edgebasetest.Object
	for i := range 250 {
		objs = append(objs, edgebasetest.Object{Key: fmt.Sprintf("files/%05d", i), Size: 300, Seed: fmt.Sprint(i)})
	}
	if err := emu.AddObjects(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	url, stats, _ := emu.ServeS3(t)
	direct, err := r2.New(r2.Config{Endpoint: url, Bucket: emu.S3Bucket(), AccessKeyID: edgebasetest.S3AccessKeyID,
		SecretAccessKey: sensitive.String(edgebasetest.S3SecretAccessKey)})
	if err != nil {
		t.Fatal(err)
	}
	repo, st := newRepo(t)
	gets := func() int64 { return stats.Requests.Load() - stats.Lists.Load() }
	var parent string
	for round := range 2 {
		if round == 1 {
			if err := emu.AddObjects(ctx, edgebasetest.Object{Key: "files/00120", Size: 300, Seed: "changed"},
				edgebasetest.Object{Key: "files/00120-new", Size: 10, Seed: "new"}); err != nil {
				t.Fatal(err)
			}
		}
		dir := t.TempDir()
		fsStore, err := fs.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fsStore.Close() })
		client := newClient(t, emu)
		q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
		engine, err := edgevault.New(edgevault.Deps{Store: fsStore, Staging: "staging/", Archives: "archives/", Tasks: q,
			Client: client, Enum: &discovery.Enumerator{Client: client, StateDir: emu.StateDir()}, Source: "docker", Now: fixedNow, R2: direct,
			Engine: pl.Options{MaxAttempts: 3, Backoff: pl.Backoff{Base: time.Millisecond}},
			Backup: edgevault.BackupOptions{Concurrency: 4, RangeKeys: 100, ComposeAbove: -1,
				Repo: func(context.Context) (*repository.Repository, error) { return repo, nil }}})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("direct-%d", round)
		if _, err := engine.Start(ctx, events.StartRequest{JobID: id, Kind: events.KindBackup, Options: events.Options{IncludeStorage: true}}); err != nil {
			t.Fatal(err)
		}
		before := gets()
		job, err := (&pl.Runner{Engine: engine, Queue: q, Depth: q.Len, Concurrency: 4}).Run(ctx, id)
		if err != nil || job.State != events.StateDone || job.Snapshot == "" {
			t.Fatalf("round %d: %v %+v", round, err, job)
		}
		read := gets() - before
		r, err := repository.Open(ctx, st, "pw")
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := r.Check(ctx, true, 0); err != nil || len(rep.Errors) > 0 {
			t.Fatalf("check: %v %v", err, rep.Errors)
		}
		info, err := r.FindSnapshot(ctx, job.Snapshot)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d objects, %d object reads", round, info.Storage.Objects, read)
		if want := int64(250 + round); info.Storage.Objects != want || job.Summary.Objects != want {
			t.Errorf("round %d: %d objects in the table, %d in the job; want %d", round, info.Storage.Objects, job.Summary.Objects, want)
		}
		if round == 1 && (read != 2 || job.Summary.Skipped != 249 || info.Parent.String() != parent) {
			t.Errorf("second backup: %d reads, %d reused, parent %s; want 2 reads, 249 reused, parent %s", read, job.Summary.Skipped, info.Parent, parent)
		}
		parent = job.Snapshot
	}
}
