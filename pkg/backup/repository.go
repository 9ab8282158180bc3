package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
)

// Repository mode (docs/REPOSITORY.md, "Snapshots from the pipeline"):
// the same plan, tasks and finish step, ending in a snapshot of the
// repository instead of an archive. The planner marks the job
// (Options.Repository) and writes, beside each storage range, the
// parent snapshot's entries of the objects that did not change; every
// task stores its unit or its range's objects through a repository
// Writer of its own and leaves a small fragment (chunk lists and the
// records of the packs it wrote); the assembler indexes the packs of the
// fragments the job's outcomes name, writes the storage table and then
// the snapshot. A redelivered task writes new packs under a new output
// and the outcome names one of the two: the other's packs are never
// indexed, garbage that prune removes after its grace period.

// RepositoryOpener returns the repository repository-mode jobs write to.
// It may keep one open across calls (a Lambda opens it once per cold
// start); the planner and the assembler reload its index for each job.
type RepositoryOpener func(ctx context.Context) (*repository.Repository, error)

// RepoPlanName is the planning file of a repository-mode job.
const RepoPlanName = "repository.json"

// RepoPlan is what the planner decided for the snapshot.
type RepoPlan struct {
	// Parent is the snapshot whose storage table the ranges reuse.
	Parent repository.ID `json:"parent,omitzero"`
}

// UnitFragment is a repository-mode unit task's part: the unit's chunks
// and the packs the task wrote.
type UnitFragment struct {
	Size   int64                   `json:"size"`
	Chunks repository.ChunkList    `json:"chunks"`
	Tail   []byte                  `json:"tail,omitempty"`
	Packs  []repository.PackRecord `json:"packs"`
}

// RangeFragment is a repository-mode storage range's part: its objects'
// storage table entries in listing order and the packs the task wrote.
type RangeFragment struct {
	Objects []repository.StorageEntry `json:"objects"`
	Missing []string                  `json:"missing,omitempty"`
	Masked  int64                     `json:"masked,omitempty"`
	Reused  int64                     `json:"reused"`
	Packs   []repository.PackRecord   `json:"packs"`
}

// rangeObject is one object of a storage range's planning file: the
// listing's entry and, in repository mode, the parent snapshot's entry
// when key, size and etag are unchanged.
type rangeObject struct {
	edgebase.Object
	Reuse *repository.StorageEntry `json:"reuse,omitempty"`
}

// ReuseKey is the planning file with the parent's entries of the unchanged
// objects of R2-direct storage range r (repository mode).
func ReuseKey(j *pipeline.Jobs, job string, r int) string {
	return j.PlanKey(job, fmt.Sprintf("storage-%06d.reuse.ndjson", r))
}

// repoPlan is the planner's repository side of one job.
type repoPlan struct {
	reuse *repository.Reuser
}

// openRepoPlan marks job as a repository job, finds its parent and
// starts walking the parent's storage table. Close it when planned.
func (p *Planner) openRepoPlan(ctx context.Context, job *events.Job) (*repoPlan, error) {
	repo, err := p.Repo(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the repository: %w", err)
	}
	if err := repo.Reload(ctx); err != nil {
		return nil, fmt.Errorf("reading the repository index: %w", err)
	}
	job.Options.Repository = true
	var plan RepoPlan
	var parent *repository.Snapshot
	if job.Options.IncludeStorage {
		latest, ok, err := repo.Latest(ctx, job.Target)
		if err != nil {
			return nil, fmt.Errorf("finding the parent snapshot: %w", err)
		}
		if ok {
			plan.Parent, parent = latest.ID, latest.Snapshot
		}
	}
	if err := p.Jobs.PutJSON(ctx, p.Jobs.PlanKey(job.ID, RepoPlanName), plan); err != nil {
		return nil, err
	}
	return &repoPlan{reuse: repo.NewReuser(ctx, parent)}, nil
}

// lookup is the parent's entry of o when o is unchanged, else nil.
func (rp *repoPlan) lookup(o edgebase.Object) *repository.StorageEntry {
	if rp == nil {
		return nil
	}
	// A parent table that fails to read makes Lookup fetch everything
	// after it: always safe, so not an error here.
	if e, ok, _ := rp.reuse.Lookup(o.Key, o.Size, o.ETag); ok {
		return &e
	}
	return nil
}

func (rp *repoPlan) close() {
	if rp != nil {
		rp.reuse.Close()
	}
}

// repoOf is the repository of a repository-mode task.
func (b *Tasks) repoOf(ctx context.Context) (*repository.Repository, error) {
	if b.Repo == nil {
		return nil, pipeline.Permanent(errors.New("this is a repository backup, but this worker has no repository configured"))
	}
	return b.Repo(ctx)
}

// putUnit stores what produce writes as the task's unit: in an archive
// job the part itself, in a repository job the value's chunks (through a
// writer of this task) and a fragment naming them. n receives the size.
func (b *Tasks) putUnit(ctx context.Context, u pipeline.Unit, n *int64, produce func(w io.Writer) error) error {
	if !u.Job.Options.Repository {
		return b.putCounted(ctx, u.Output+PartName, n, produce)
	}
	repo, err := b.repoOf(ctx)
	if err != nil {
		return err
	}
	w := repo.NewWriter()
	vw := w.NewValue(ctx)
	if err := produce(vw); err != nil {
		vw.Abort()
		_, _ = w.Finish(ctx)
		return err
	}
	unit, err := vw.Close()
	recs, ferr := w.Finish(ctx)
	if err = errors.Join(err, ferr); err != nil {
		return fmt.Errorf("storing %s in the repository: %w", u.Task.Unit, err)
	}
	*n = unit.Size
	if unit.Chunks == nil {
		unit.Chunks = repository.ChunkList{}
	}
	return b.Jobs.PutJSON(ctx, u.Output+PartName, UnitFragment{Size: unit.Size, Chunks: unit.Chunks, Tail: unit.Tail, Packs: recs})
}

// repoRange is storageRange in a repository job: unchanged objects take
// the parent's entry without any request, the others are read (at most
// Concurrency at once) straight into a writer of this task. Its result
// counts every object, the reused ones as Skipped, and the bytes read.
func (b *Tasks) repoRange(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	repo, err := b.repoOf(ctx)
	if err != nil {
		return pipeline.Result{}, err
	}
	objs, err := b.rangeObjects(ctx, u)
	if err != nil {
		return pipeline.Result{}, err
	}
	type result struct {
		e             repository.StorageEntry
		found, masked bool
	}
	results := make([]result, len(objs))
	release, err := b.rangeSlot(ctx)
	if err != nil {
		return pipeline.Result{}, err
	}
	defer release()
	w := repo.NewWriter()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(b.Concurrency, 1))
	for i, o := range objs {
		if o.Reuse != nil {
			results[i] = result{e: *o.Reuse, found: true}
			continue
		}
		g.Go(func() error {
			e, found, masked, err := FetchEntry(gctx, w, b.source(), o.Object)
			if err != nil {
				return fmt.Errorf("object %q: %w", o.Key, err)
			}
			results[i] = result{e, found, masked}
			return nil
		})
	}
	err = g.Wait()
	recs, ferr := w.Finish(ctx)
	if err = errors.Join(err, ferr); err != nil {
		return pipeline.Result{}, classify(err)
	}
	frag := RangeFragment{Objects: make([]repository.StorageEntry, 0, len(objs)), Packs: recs}
	res := pipeline.Result{}
	for i, r := range results {
		if !r.found {
			frag.Missing = append(frag.Missing, objs[i].Key)
			res.Warn("object %q was deleted after the listing; not in the backup", objs[i].Key)
			continue
		}
		if r.masked {
			frag.Masked++
		}
		res.Objects++
		if objs[i].Reuse != nil {
			frag.Reused++
			res.Skipped++ // not read: the parent's chunks
		} else {
			res.Bytes += r.e.Size // read from the deployment
		}
		frag.Objects = append(frag.Objects, r.e)
	}
	return res, b.Jobs.PutJSON(ctx, u.Output+PartName, frag)
}

// rangeObjects are the objects of a storage range with what the planner
// found reusable.
func (b *Tasks) rangeObjects(ctx context.Context, u pipeline.Unit) ([]rangeObject, error) {
	if !isKeyRange(u.Task.Input) {
		return readRangeObjects(ctx, b.Jobs, u.Task.Job, u.Task.Range)
	}
	listed, err := relist(ctx, b.Jobs, b.Direct, u.Task.Input)
	if err != nil {
		return nil, err
	}
	reuse := map[string]repository.StorageEntry{}
	rc, err := b.Jobs.Store.Get(ctx, ReuseKey(b.Jobs, u.Task.Job, u.Task.Range))
	switch {
	case errors.Is(err, blob.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		dec := json.NewDecoder(rc)
		for {
			var e repository.StorageEntry
			if err := dec.Decode(&e); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				_ = rc.Close()
				return nil, fmt.Errorf("storage range %d: reuse file: %w", u.Task.Range, err)
			}
			reuse[e.Key] = e
		}
		_ = rc.Close()
	}
	out := make([]rangeObject, len(listed))
	for i, o := range listed {
		out[i].Object = o
		if e, ok := reuse[o.Key]; ok && e.Size == o.Size && e.ETag == o.ETag {
			out[i].Reuse = &e
		}
	}
	return out, nil
}

// readRangeObjects loads the objects of one storage page range with their
// reuse entries.
func readRangeObjects(ctx context.Context, j *pipeline.Jobs, job string, r int) ([]rangeObject, error) {
	var out []rangeObject
	err := eachRangeObject(ctx, j, job, r, func(o rangeObject) error {
		out = append(out, o)
		return nil
	})
	return out, err
}

// Saver stores a stream as chunks: a repository or one of its writers.
type Saver interface {
	SaveStream(ctx context.Context, r io.Reader) (repository.ChunkList, int64, error)
}

// FetchEntry reads object o into save and returns its storage table
// entry: its chunks, SHA-256 and the content type a backup records.
// found is false for an object deleted since the listing; masked reports
// a type the server hid (RecordedType). The source retries a whole read
// on transport errors, so the entry comes from the read that succeeded
// (chunks an abandoned read stored are garbage a prune removes).
func FetchEntry(ctx context.Context, save Saver, src ObjectSource, o edgebase.Object) (e repository.StorageEntry, found, masked bool, err error) {
	err = src.GetObject(ctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
		h := sha256.New()
		list, n, err := save.SaveStream(ctx, io.TeeReader(pipeline.MeteredReader(ctx, r), h))
		if err != nil {
			return err
		}
		if info.Size >= 0 && n != info.Size {
			return fmt.Errorf("read %d bytes, the reply announced %d", n, info.Size)
		}
		var ct string
		ct, masked = RecordedType(o, info)
		etag := o.ETag
		if info.ETag != "" {
			etag = info.ETag
		}
		if list == nil {
			list = repository.ChunkList{}
		}
		e = repository.StorageEntry{Key: o.Key, Size: n, ETag: etag, ContentType: ct, SHA256: hex.EncodeToString(h.Sum(nil)), Chunks: list}
		if name, escaped := archive.ObjectPath(o.Key); escaped {
			e.Path = name
		}
		return nil
	})
	if errors.Is(err, edgebase.ErrNotFound) {
		return repository.StorageEntry{}, false, false, nil
	}
	return e, err == nil, masked, err
}

// finishRepository is the assembler's finish step of a repository job:
// index every pack the job's fragments name, write the storage table, then
// the snapshot. It can be killed at any step and run again: index files
// leave out packs already indexed, the table's chunks deduplicate, and the
// sealed snapshot is staged (create-once) before it is stored, so a
// repeated run stores the same file and never a second snapshot.
func (a *Assembler) finishRepository(ctx context.Context, job *events.Job) (pipeline.Outcome, error) {
	if a.Repo == nil {
		return pipeline.Outcome{}, pipeline.Permanent(errors.New("this is a repository backup, but the assembler has no repository configured"))
	}
	repo, err := a.Repo(ctx)
	if err != nil {
		return pipeline.Outcome{}, fmt.Errorf("opening the repository: %w", err)
	}
	if err := repo.Reload(ctx); err != nil {
		return pipeline.Outcome{}, fmt.Errorf("reading the repository index: %w", err)
	}
	staged := a.Jobs.StagingKey(job.ID, "assembly", "snapshot")
	sealed, err := readStaged(ctx, a.Jobs.Store, staged)
	if err != nil {
		return pipeline.Outcome{}, err
	}
	var warnings []string
	if sealed == nil {
		var snap *repository.Snapshot
		if snap, warnings, err = a.snapshotOf(ctx, repo, job); err != nil {
			return pipeline.Outcome{}, err
		}
		_, b, err := repo.SealSnapshot(snap)
		if err != nil {
			return pipeline.Outcome{}, err
		}
		switch err := a.Jobs.Store.Create(ctx, staged, bytes.NewReader(b)); {
		case errors.Is(err, blob.ErrExist): // a concurrent run staged first
			if sealed, err = readStaged(ctx, a.Jobs.Store, staged); err != nil {
				return pipeline.Outcome{}, err
			}
		case err != nil:
			return pipeline.Outcome{}, fmt.Errorf("staging the snapshot: %w", err)
		default:
			sealed = b
		}
	}
	id, err := repo.PutSnapshot(ctx, sealed)
	if err != nil {
		return pipeline.Outcome{}, err
	}
	return pipeline.Outcome{Snapshot: id.String(), Warnings: warnings}, nil
}

func readStaged(ctx context.Context, store pipeline.BlobStore, key string) ([]byte, error) {
	rc, err := store.Get(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the staged snapshot: %w", err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the staged snapshot: %w", err)
	}
	return b, nil
}

// fragment is one task's fragment, read ahead.
type fragment struct {
	out  string
	unit *UnitFragment
	rng  *RangeFragment
}

// snapshotOf builds the job's snapshot from its fragments in plan order,
// indexing their packs and writing the storage table on the way.
func (a *Assembler) snapshotOf(ctx context.Context, repo *repository.Repository, job *events.Job) (*repository.Snapshot, []string, error) {
	var plan RepoPlan
	if err := getOptionalJSON(ctx, a.Jobs, a.Jobs.PlanKey(job.ID, RepoPlanName), &plan); err != nil {
		return nil, nil, err
	}
	snap := &repository.Snapshot{Time: job.Started.UTC(), SourceURL: job.Target, EdgevaultVersion: a.Version,
		Header: archive.Header{Version: archive.Version, Timestamp: archive.FormatTimestamp(job.Started), Source: job.Source}}
	iw := repo.NewIndexWriter()
	tw := repo.NewWriter()
	table := tw.NewTableWriter(ctx)
	var masked, objects int64
	configOut := ""
	err := eachAhead(ctx, a.Jobs, job.ID, ReadAhead, func(ctx context.Context, t events.Task) (fragment, error) {
		out, err := a.output(ctx, t)
		if err != nil {
			return fragment{}, err
		}
		f := fragment{out: out}
		if t.Kind == events.TaskStorage {
			f.rng = &RangeFragment{}
			err = a.Jobs.GetJSON(ctx, out+PartName, f.rng)
		} else {
			f.unit = &UnitFragment{}
			err = a.Jobs.GetJSON(ctx, out+PartName, f.unit)
		}
		if err != nil {
			return f, fmt.Errorf("%s: %w", t.Unit, err)
		}
		return f, nil
	}, func(t events.Task, f fragment) error {
		if f.rng != nil {
			if err := iw.Add(ctx, f.rng.Packs...); err != nil {
				return err
			}
			masked += f.rng.Masked
			for _, e := range f.rng.Objects {
				if err := table.Add(e); err != nil {
					return err
				}
				objects++
			}
			return nil
		}
		if t.Kind == events.TaskConfig {
			configOut = f.out
		}
		sec, name, err := unitSection(t)
		if err != nil {
			return err
		}
		snap.Units = append(snap.Units, repository.Unit{Section: sec, Name: name, Size: f.unit.Size, Chunks: f.unit.Chunks, Tail: f.unit.Tail})
		return iw.Add(ctx, f.unit.Packs...)
	}, func(fragment) {})
	if err != nil {
		table.Abort()
		_, _ = tw.Finish(ctx)
		return nil, nil, err
	}
	if snap.Storage, err = table.Close(); err != nil {
		return nil, nil, err
	}
	recs, err := tw.Finish(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := iw.Add(ctx, recs...); err != nil {
		return nil, nil, err
	}
	if err := iw.Close(ctx); err != nil {
		return nil, nil, err
	}
	if job.Options.IncludeStorage {
		snap.Parent = plan.Parent
	}
	man := &archive.Manifest{}
	warning, err := a.observe(ctx, job.ID, configOut, masked, man)
	if err != nil {
		return nil, nil, err
	}
	snap.Server = man.Server
	var warnings []string
	if warning != "" {
		warnings = append(warnings, warning)
	}
	return snap, warnings, nil
}

// unitSection is the section of the unit a task backs up.
func unitSection(t events.Task) (archive.Section, string, error) {
	switch t.Kind {
	case events.TaskControlD1:
		return archive.SectionControlD1, "", nil
	case events.TaskAuthD1:
		return archive.SectionAuthD1, "", nil
	case events.TaskDO:
		return archive.SectionDatabase, t.DOName, nil
	case events.TaskConfig:
		return archive.SectionConfig, "", nil
	case events.TaskData:
		return archive.SectionDataNamespace, t.Namespace, nil
	case events.TaskSecrets:
		return archive.SectionSecrets, "", nil
	}
	return "", "", fmt.Errorf("unexpected task kind %q in a backup plan", t.Kind)
}
