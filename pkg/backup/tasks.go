package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/iox"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/secrets"
)

// BackupTasks runs the backup task kinds. Each writes its output to the
// task's part key with one atomic Put, so a redelivered task overwrites its
// own part and never leaves half of one.
type BackupTasks struct {
	Jobs    *Jobs
	Client  *edgebase.Client
	Secrets secrets.Store // for --include-secrets; nil means none are available
	// Concurrency bounds parallel object downloads inside one storage range.
	Concurrency int
	// SpoolDir holds downloaded objects larger than SpoolInMemory while they
	// wait for their turn in the tar stream ("" = os.TempDir()).
	SpoolDir      string
	SpoolInMemory int64
}

// Handlers returns the handler per backup task kind.
func (b *BackupTasks) Handlers() map[events.TaskKind]Handler {
	return map[events.TaskKind]Handler{
		events.TaskControlD1: b.controlD1,
		events.TaskAuthD1:    b.authD1,
		events.TaskDO:        b.dumpDO,
		events.TaskData:      b.dumpData,
		events.TaskConfig:    b.config,
		events.TaskSecrets:   b.secrets,
		events.TaskStorage:   b.storageRange,
	}
}

// StorageIndex is the part beside a storage range's gzip member: the
// objects it holds (storage.objects entries) and the member's own size
// and SHA-256 for the manifest.
type StorageIndex struct {
	Objects []archive.Object `json:"objects"`
	Size    int64            `json:"size"`
	SHA256  string           `json:"sha256"`
	Missing []string         `json:"missing,omitempty"`
}

// IndexSuffix names the part holding a storage range's StorageIndex.
const IndexSuffix = ".index.json"

func (b *BackupTasks) controlD1(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	return b.tablesPart(ctx, t, b.Client.DumpControlD1)
}

func (b *BackupTasks) authD1(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	return b.tablesPart(ctx, t, b.Client.DumpD1)
}

// tablesPart stores the "tables" object of a D1 dump reply.
func (b *BackupTasks) tablesPart(ctx context.Context, t events.Task, dump func(context.Context, func(io.Reader) error) error) (Result, error) {
	var res Result
	err := dump(ctx, func(r io.Reader) error {
		res = Result{}
		return b.putStream(ctx, b.Jobs.PartKey(t.Job, t.ID, ""), func(w io.Writer) error {
			stats, err := archive.CopyDumpTables(w, MeteredReader(ctx, r), nil, false)
			for _, s := range stats {
				res.Rows += s.Rows
			}
			return err
		}, &res.Bytes)
	})
	return res, classify(err)
}

func (b *BackupTasks) dumpDO(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	var res Result
	err := b.Client.DumpDO(ctx, t.DOName, t.DOType, func(r io.Reader) error {
		var err error
		res, err = b.validatedPart(ctx, t, archive.SectionDatabase, t.DOName, r)
		return err
	})
	return res, classify(err)
}

func (b *BackupTasks) dumpData(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	var res Result
	err := b.Client.DumpData(ctx, t.Namespace, func(r io.Reader) error {
		var err error
		res, err = b.validatedPart(ctx, t, archive.SectionDataNamespace, t.Namespace, r)
		return err
	})
	return res, classify(err)
}

func (b *BackupTasks) config(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	_, raw, err := b.Client.Config(ctx)
	if err != nil {
		return Result{}, classify(err)
	}
	return b.validatedPart(ctx, t, archive.SectionConfig, "", bytes.NewReader(raw))
}

func (b *BackupTasks) secrets(ctx context.Context, _ *events.Job, t events.Task) (Result, error) {
	if b.Secrets == nil {
		return Result{}, Permanent(errors.New("secrets were requested but no secret store is configured"))
	}
	vals, err := b.Secrets.Load(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("reading secrets: %w", err)
	}
	res := Result{}
	if len(vals) == 0 {
		res.Warnings = append(res.Warnings, "no secrets found; the backup holds none")
	}
	return res, b.Jobs.PutJSON(ctx, b.Jobs.PartKey(t.Job, t.ID, ""), vals)
}

// validatedPart stores r verbatim while checking it is a valid piece of
// the given section.
func (b *BackupTasks) validatedPart(ctx context.Context, t events.Task, sec archive.Section, name string, r io.Reader) (Result, error) {
	var res Result
	err := b.putStream(ctx, b.Jobs.PartKey(t.Job, t.ID, ""), func(w io.Writer) error {
		stats, err := archive.Validate(sec, name, io.TeeReader(MeteredReader(ctx, r), w))
		res.Rows = stats.Rows
		return err
	}, &res.Bytes)
	return res, err
}

// putStream stores what produce writes under key, atomically; n receives
// the byte count.
func (b *BackupTasks) putStream(ctx context.Context, key string, produce func(w io.Writer) error, n *int64) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		cw := &iox.CountingWriter{W: pw}
		err := produce(cw)
		*n = cw.N
		pw.CloseWithError(err)
		done <- err
	}()
	perr := b.Jobs.Store.Put(ctx, key, pr)
	pr.CloseWithError(perr) // stops produce if the store gave up
	if err := <-done; err != nil {
		return err
	}
	return perr
}

// classify marks replies that retrying cannot change as permanent.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, edgebase.ErrUnauthorized), errors.Is(err, edgebase.ErrForbidden),
		errors.Is(err, edgebase.ErrBadRequest), errors.Is(err, edgebase.ErrNotFound),
		errors.Is(err, edgebase.ErrNeedsCreate), errors.Is(err, archive.ErrInvalid):
		if edgebase.IsTransport(err) {
			return err
		}
		return Permanent(err)
	}
	return err
}

// storageRange downloads one page range of objects in parallel and writes
// them, in listing order, as one gzip member of tar entries. Objects wait
// for their turn in memory when small, in a spool file otherwise, so
// memory stays bounded by Concurrency x SpoolInMemory.
func (b *BackupTasks) storageRange(ctx context.Context, job *events.Job, t events.Task) (Result, error) {
	objs, err := b.Jobs.readRange(ctx, t.Job, t.Range)
	if err != nil {
		return Result{}, err
	}
	conc := max(b.Concurrency, 1)
	memLimit := b.SpoolInMemory
	if memLimit <= 0 {
		memLimit = 1 << 20
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]chan spooled, len(objs))
	for i := range slots {
		slots[i] = make(chan spooled, 1)
	}
	sem := make(chan struct{}, conc)
	go func() {
		for i, o := range objs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for ; i < len(objs); i++ {
					slots[i] <- spooled{err: ctx.Err()}
				}
				return
			}
			go func() { slots[i] <- b.fetch(ctx, o, memLimit) }()
		}
	}()

	idx := StorageIndex{}
	res := Result{}
	var memberSize int64
	consumed := 0
	h := sha256.New()
	err = b.putStream(ctx, b.Jobs.PartKey(t.Job, t.ID, ""), func(w io.Writer) error {
		hw := io.MultiWriter(w, h)
		m := archive.NewStorageMember(hw, job.Started)
		for i, o := range objs {
			s := <-slots[i]
			consumed = i + 1
			if s.err == nil && s.missing {
				idx.Missing = append(idx.Missing, o.Key)
				res.Warnings = append(res.Warnings, fmt.Sprintf("object %q was deleted after the listing; not in the backup", o.Key))
				<-sem
				continue
			}
			if s.err != nil {
				<-sem
				return fmt.Errorf("object %q: %w", o.Key, s.err)
			}
			e, err := m.Add(o.Key, s.size, s.reader())
			s.close()
			<-sem
			if err != nil {
				return fmt.Errorf("object %q: %w", o.Key, err)
			}
			obj := archive.Object{Key: o.Key, Size: s.size, ETag: o.ETag, ContentType: s.contentType, SHA256: e.SHA256}
			if e.Escaped {
				obj.Path = e.Name
				res.Warnings = append(res.Warnings, fmt.Sprintf("key %q cannot be a plain tar path; stored as %s", o.Key, e.Name))
			}
			idx.Objects = append(idx.Objects, obj)
			res.Objects++
		}
		return m.Close()
	}, &memberSize)
	if err != nil {
		cancel()
		// Every remaining slot receives exactly one value (a fetch result or
		// the producer's cancellation); drain them so spool files go away.
		for _, c := range slots[consumed:] {
			(<-c).close()
		}
		return res, classify(err)
	}
	for _, o := range idx.Objects {
		res.Bytes += o.Size
	}
	idx.Size, idx.SHA256 = memberSize, hex.EncodeToString(h.Sum(nil))
	return res, b.Jobs.PutJSON(ctx, b.Jobs.PartKey(t.Job, t.ID, IndexSuffix), idx)
}

// spooled is one downloaded object waiting for its turn.
type spooled struct {
	data        []byte
	file        *os.File
	size        int64
	contentType string
	missing     bool
	err         error
}

func (s spooled) reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.data)
}

func (s spooled) close() {
	if s.file != nil {
		s.file.Close()
		os.Remove(s.file.Name())
	}
}

func (b *BackupTasks) fetch(ctx context.Context, o edgebase.Object, memLimit int64) spooled {
	var out spooled
	err := b.Client.GetObject(ctx, o.Key, func(r io.Reader, info edgebase.ObjectInfo) error {
		out.close()
		out = spooled{contentType: info.ContentType}
		size := info.Size
		if size < 0 {
			size = o.Size
		}
		r = MeteredReader(ctx, r)
		if size <= memLimit {
			var buf bytes.Buffer
			buf.Grow(int(max(size, 0)) + 1)
			n, err := io.Copy(&buf, r)
			out.data, out.size = buf.Bytes(), n
			return err
		}
		f, err := os.CreateTemp(b.SpoolDir, "edgevault-object-*")
		if err != nil {
			return err
		}
		out.file = f
		n, err := io.Copy(f, r)
		out.size = n
		return err
	})
	if errors.Is(err, edgebase.ErrNotFound) {
		return spooled{missing: true}
	}
	if err != nil {
		out.close()
		return spooled{err: err}
	}
	return out
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

// sortedKeys returns m's keys in order (deterministic output).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
