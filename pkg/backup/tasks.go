package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/secrets"
)

// Output names under a delivery's output prefix (pipeline.Unit.Output).
const (
	// PartName is a task's main output: a dump, or a storage range's gzip
	// member.
	PartName = "part"
	// IndexName is a storage range's StorageIndex.
	IndexName = "index.json"
)

// Tasks runs the backup task kinds. Each writes its outputs under its
// delivery's output prefix with atomic Puts; the delivery that records
// the task's outcome first is the one whose outputs the archive uses.
type Tasks struct {
	Jobs    *pipeline.Jobs
	Client  *edgebase.Client
	Secrets secrets.Store // for --include-secrets; nil means none are available
	// Direct, when set, reads storage through R2 direct (DirectStorage)
	// instead of the admin API.
	Direct DirectStorage
	// Concurrency bounds parallel object downloads inside one storage range.
	Concurrency int
	// Repo is the repository of repository-mode jobs (the job says
	// which mode it is in).
	Repo RepositoryOpener
	// Spool holds downloaded objects while they wait for their turn in a
	// storage member (shared by every task of the process); nil gives a
	// default spool in the system temp directory.
	Spool *Spool

	rangeOnce sync.Once
	ranges    chan struct{} // repository ranges storing objects, process-wide
}

// rangeSlot lets one repository range at a time in this process store
// the objects it reads (each with Concurrency reads in flight): a range's
// writer holds up to two pack buffers, so memory stays that of one range
// however many run side by side.
func (b *Tasks) rangeSlot(ctx context.Context) (release func(), err error) {
	b.rangeOnce.Do(func() { b.ranges = make(chan struct{}, 1) })
	select {
	case b.ranges <- struct{}{}:
		return func() { <-b.ranges }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Handlers returns the handler per backup task kind.
func (b *Tasks) Handlers() map[events.TaskKind]pipeline.Handler {
	if b.Spool == nil {
		b.Spool = NewSpool("", 0, 0)
	}
	return map[events.TaskKind]pipeline.Handler{
		events.TaskControlD1: b.controlD1,
		events.TaskAuthD1:    b.authD1,
		events.TaskDO:        b.dumpDO,
		events.TaskData:      b.dumpData,
		events.TaskConfig:    b.config,
		events.TaskSecrets:   b.secrets,
		events.TaskStorage:   b.storageRange,
	}
}

// StorageIndex is the output beside a storage range's gzip member: the
// objects it holds (storage.objects entries) and the member's own size
// and SHA-256 for the manifest. Both come from the same delivery.
type StorageIndex struct {
	Objects []archive.Object `json:"objects"`
	Size    int64            `json:"size"`
	SHA256  string           `json:"sha256"`
	Missing []string         `json:"missing,omitempty"`
	// Masked counts the objects whose type the server masked (see
	// RecordedType); the assembler adds them up for the manifest.
	Masked int64 `json:"masked,omitempty"`
}

func (b *Tasks) controlD1(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	return b.tablesPart(ctx, u, b.Client.DumpControlD1)
}

func (b *Tasks) authD1(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	return b.tablesPart(ctx, u, b.Client.DumpD1)
}

// tablesPart stores the "tables" object of a D1 dump reply.
func (b *Tasks) tablesPart(ctx context.Context, u pipeline.Unit, dump func(context.Context, func(io.Reader) error) error) (pipeline.Result, error) {
	var res pipeline.Result
	err := dump(ctx, func(r io.Reader) error {
		res = pipeline.Result{}
		return b.putUnit(ctx, u, &res.Bytes, func(w io.Writer) error {
			stats, err := archive.CopyDumpTables(w, pipeline.MeteredReader(ctx, r), nil, false)
			for _, s := range stats {
				res.Rows += s.Rows
			}
			return err
		})
	})
	return res, classify(err)
}

func (b *Tasks) dumpDO(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	var res pipeline.Result
	err := b.Client.DumpDO(ctx, u.Task.DOName, u.Task.DOType, func(r io.Reader) error {
		var err error
		res, err = b.validatedPart(ctx, u, archive.SectionDatabase, u.Task.DOName, r)
		return err
	})
	return res, classify(err)
}

func (b *Tasks) dumpData(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	var res pipeline.Result
	err := b.Client.DumpData(ctx, u.Task.Namespace, func(r io.Reader) error {
		var err error
		res, err = b.validatedPart(ctx, u, archive.SectionDataNamespace, u.Task.Namespace, r)
		return err
	})
	return res, classify(err)
}

// config stores the config snapshot verbatim (a redacted one too: the
// archive describes the deployment, it never restores a config) and notes
// how many values the server withheld.
func (b *Tasks) config(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	cfg, raw, err := b.Client.Config(ctx)
	if err != nil {
		return pipeline.Result{}, classify(err)
	}
	res, err := b.validatedPart(ctx, u, archive.SectionConfig, "", bytes.NewReader(raw))
	if err != nil {
		return res, err
	}
	return res, b.Jobs.PutJSON(ctx, u.Output+ConfigInfoName, ConfigInfo{Redacted: len(cfg.Redacted)})
}

func (b *Tasks) secrets(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	if b.Secrets == nil {
		return pipeline.Result{}, pipeline.Permanent(errors.New("secrets were requested but no secret store is configured"))
	}
	vals, err := b.Secrets.Load(ctx)
	if err != nil {
		return pipeline.Result{}, fmt.Errorf("reading secrets: %w", err)
	}
	res := pipeline.Result{}
	if len(vals) == 0 {
		res.Warn("no secrets found; the backup holds none")
	}
	if u.Job.Options.Repository {
		raw, err := json.Marshal(vals)
		if err != nil {
			return res, err
		}
		return res, b.putUnit(ctx, u, &res.Bytes, func(w io.Writer) error {
			_, err := w.Write(raw)
			return err
		})
	}
	return res, b.Jobs.PutJSON(ctx, u.Output+PartName, vals)
}

// validatedPart stores r verbatim while checking it is a valid piece of
// the given section.
func (b *Tasks) validatedPart(ctx context.Context, u pipeline.Unit, sec archive.Section, name string, r io.Reader) (pipeline.Result, error) {
	var res pipeline.Result
	err := b.putUnit(ctx, u, &res.Bytes, func(w io.Writer) error {
		stats, err := archive.Validate(sec, name, io.TeeReader(pipeline.MeteredReader(ctx, r), w))
		res.Rows = stats.Rows
		return err
	})
	return res, err
}

// putCounted stores what produce writes under key, atomically; n receives
// the byte count.
func (b *Tasks) putCounted(ctx context.Context, key string, n *int64, produce func(w io.Writer) error) error {
	return b.Jobs.PutStream(ctx, key, func(w io.Writer) error {
		cw := &iox.CountingWriter{W: w}
		err := produce(cw)
		*n = cw.N
		return err
	})
}

// classify marks replies that retrying cannot change as permanent.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, edgebase.ErrUnauthorized), errors.Is(err, edgebase.ErrForbidden),
		errors.Is(err, edgebase.ErrBadRequest), errors.Is(err, edgebase.ErrNotFound),
		errors.Is(err, edgebase.ErrNeedsCreate), errors.Is(err, edgebase.ErrRedirect), errors.Is(err, archive.ErrInvalid):
		if edgebase.IsTransport(err) {
			return err
		}
		return pipeline.Permanent(err)
	}
	return err
}

// storageRange downloads one page range of objects in parallel and writes
// them, in listing order, as one gzip member of tar entries. Objects wait
// for their turn in the spool, so memory stays bounded by Concurrency x
// the spool's in-memory limit and disk by the spool's budget.
func (b *Tasks) storageRange(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	if u.Job.Options.Repository {
		return b.repoRange(ctx, u)
	}
	var objs []edgebase.Object
	var err error
	if isKeyRange(u.Task.Input) {
		objs, err = relist(ctx, b.Jobs, b.Direct, u.Task.Input)
	} else {
		objs, err = readRange(ctx, b.Jobs, u.Task.Job, u.Task.Range)
	}
	if err != nil {
		return pipeline.Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	pf := b.prefetch(ctx, objs)
	defer func() { cancel(); pf.drain() }()

	idx := StorageIndex{}
	res := pipeline.Result{}
	escaped := 0
	h := sha256.New()
	err = b.putCounted(ctx, u.Output+PartName, &idx.Size, func(w io.Writer) error {
		m := archive.NewStorageMember(io.MultiWriter(w, h), u.Job.Started)
		for i, o := range objs {
			obj, ok, masked, err := b.addObject(ctx, m, o, pf.next(i))
			if err != nil {
				return fmt.Errorf("object %q: %w", o.Key, err)
			}
			if !ok {
				idx.Missing = append(idx.Missing, o.Key)
				res.Warn("object %q was deleted after the listing; not in the backup", o.Key)
				continue
			}
			if masked {
				idx.Masked++
			}
			if obj.Path != "" {
				if escaped++; escaped <= 3 {
					res.Warn("key %q cannot be a plain tar path; stored as %s", o.Key, obj.Path)
				}
			}
			idx.Objects = append(idx.Objects, obj)
			res.Objects++
			res.Bytes += obj.Size
		}
		return m.Close()
	})
	if err != nil {
		return res, classify(err)
	}
	if escaped > 3 {
		res.Warn("%d more keys of this range cannot be plain tar paths and were stored escaped", escaped-3)
	}
	idx.SHA256 = hex.EncodeToString(h.Sum(nil))
	return res, b.Jobs.PutJSON(ctx, u.Output+IndexName, idx)
}

// addObject appends one object to the member: a spooled one from the
// spool, one too large to spool straight from EdgeBase. ok is false for an
// object deleted since the listing; masked reports a type the server hid.
func (b *Tasks) addObject(ctx context.Context, m *archive.StorageMember, o edgebase.Object, s spooled) (obj archive.Object, ok, masked bool, err error) {
	defer s.close()
	switch {
	case s.err != nil:
		return archive.Object{}, false, false, s.err
	case s.missing:
		return archive.Object{}, false, false, nil
	case s.direct:
		return b.streamObject(ctx, m, o)
	}
	e, err := m.Add(o.Key, s.size, s.reader())
	if err != nil {
		return archive.Object{}, false, false, err
	}
	ct, masked := RecordedType(o, s.info)
	return archiveObject(o, s.info, s.size, ct, e), true, masked, nil
}

// streamObject fetches an object too large for the spool directly into
// the member. Bytes already in the member cannot be taken back, so the
// request is not retried here: a failure fails this delivery of the task.
func (b *Tasks) streamObject(ctx context.Context, m *archive.StorageMember, o edgebase.Object) (archive.Object, bool, bool, error) {
	var (
		obj    archive.Object
		masked bool
	)
	var src ObjectSource = b.Client.WithRetry(edgebase.RetryPolicy{MaxAttempts: 1})
	if b.Direct != nil {
		src = b.Direct
	}
	err := src.GetObject(ctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
		size := info.Size
		if size < 0 {
			size = o.Size
		}
		e, err := m.Add(o.Key, size, pipeline.MeteredReader(ctx, r))
		if err != nil {
			return err
		}
		var ct string
		ct, masked = RecordedType(o, info)
		obj = archiveObject(o, info, size, ct, e)
		return nil
	})
	if errors.Is(err, edgebase.ErrNotFound) {
		return obj, false, false, nil
	}
	return obj, err == nil, masked, err
}

// archiveObject records an object as read: the etag of the reply when it
// sent one (R2 direct, which checked the bytes against it), else the
// listing's.
func archiveObject(o edgebase.Object, info edgebase.ObjectInfo, size int64, contentType string, e archive.Entry) archive.Object {
	etag := o.ETag
	if info.ETag != "" {
		etag = info.ETag
	}
	obj := archive.Object{Key: o.Key, Size: size, ETag: etag, ContentType: contentType, SHA256: e.SHA256}
	if e.Escaped {
		obj.Path = e.Name
	}
	return obj
}

// source is where objects are read from.
func (b *Tasks) source() ObjectSource {
	if b.Direct != nil {
		return b.Direct
	}
	return b.Client
}

// prefetcher downloads the objects of a range ahead of the member writer,
// in listing order, at most Concurrency ahead of it: a place in the window
// is taken before an object is fetched and given back when the writer
// takes the object, so fetched objects waiting for their turn (held in
// memory up to the spool's in-memory limit each) count against it too.
type prefetcher struct {
	slots []chan spooled
	// held marks the slots whose object holds a place in the window
	// until the writer takes it.
	held     []bool
	window   chan struct{}
	consumed int
}

func (b *Tasks) prefetch(ctx context.Context, objs []edgebase.Object) *prefetcher {
	p := &prefetcher{slots: make([]chan spooled, len(objs)), held: make([]bool, len(objs)),
		window: make(chan struct{}, max(b.Concurrency, 1))}
	for i := range p.slots {
		p.slots[i] = make(chan spooled, 1)
	}
	go func() {
		for i, o := range objs {
			held, direct, err := b.Spool.reserve(ctx, o)
			if err == nil {
				select {
				case p.window <- struct{}{}:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
			if err != nil || direct {
				if held > 0 {
					b.Spool.sem.Release(held)
				}
				p.slots[i] <- spooled{direct: direct, err: err}
				if err != nil {
					for i++; i < len(objs); i++ {
						p.slots[i] <- spooled{err: err}
					}
					return
				}
				<-p.window // a direct object is fetched when its turn comes
				continue
			}
			p.held[i] = true
			go func() { p.slots[i] <- b.Spool.fetch(ctx, b.source(), o, held) }()
		}
	}()
	return p
}

func (p *prefetcher) next(i int) spooled {
	p.consumed = i + 1
	return p.take(i)
}

// take receives object i and gives its place in the window back.
func (p *prefetcher) take(i int) spooled {
	s := <-p.slots[i]
	if p.held[i] {
		<-p.window
	}
	return s
}

// drain closes what the writer did not consume (after a failure): every
// slot receives exactly one value, so this ends once the context is
// cancelled and the fetches in flight return.
func (p *prefetcher) drain() {
	for i := p.consumed; i < len(p.slots); i++ {
		p.take(i).close()
	}
}

// hashingWriter counts and hashes what passes through.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter { return &hashingWriter{w: w, h: sha256.New()} }

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

func (hw *hashingWriter) sum() string { return hex.EncodeToString(hw.h.Sum(nil)) }
