package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
)

// ErrNoStorageBytes is returned by Export of a .tar.gz from a snapshot
// whose storage table lists objects without their bytes (imported from a
// .json archive).
var ErrNoStorageBytes = errors.New("repository: snapshot lists storage objects without their bytes")

// openStream returns a reader of list's plaintext. Close it to stop early.
func (r *Repository) openStream(ctx context.Context, list ChunkList) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(r.LoadStream(ctx, list, pw)) }()
	return pr
}

// Export writes snapshot s as a v1.1 archive: backup.json alone (JSON) or
// in a .tar.gz with every storage object (TarGz). backup.json is written by
// archive.JSONWriter from the units' raw values in their original order, so
// it equals what the backup that made the snapshot wrote; the tar headers
// carry the backup's start time, as `backup create` writes them. A .tar.gz
// reads the snapshot twice (backup.json's size comes first in tar); memory
// stays one chunk.
func (r *Repository) Export(ctx context.Context, s *Snapshot, w io.Writer, f archive.Format) error {
	return r.export(ctx, s, w, f, archive.NewTarGzWriter)
}

// ExportStored is Export with the storage objects not compressed, for a
// reader in the same process (a restore from a snapshot): the archive is
// the same but for its gzip blocks.
func (r *Repository) ExportStored(ctx context.Context, s *Snapshot, w io.Writer, f archive.Format) error {
	return r.export(ctx, s, w, f, archive.NewStoredTarGzWriter)
}

func (r *Repository) export(ctx context.Context, s *Snapshot, w io.Writer, f archive.Format, newTar func(io.Writer, time.Time) *archive.TarGzWriter) error {
	switch f {
	case archive.JSON:
		return r.writeDocument(ctx, s, w)
	case archive.TarGz:
	default:
		return fmt.Errorf("repository: export: unknown format %v", f)
	}
	var count countWriter
	if err := r.writeDocument(ctx, s, &count); err != nil {
		return err
	}
	mtime, err := time.Parse(time.RFC3339Nano, s.Header.Timestamp)
	if err != nil {
		mtime = s.Time
	}
	tw := newTar(w, mtime)
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(r.writeDocument(ctx, s, pw)) }()
	err = tw.WriteBackupJSON(pr, count.n)
	_ = pr.Close()
	if err != nil {
		return fmt.Errorf("repository: export: backup.json: %w", err)
	}
	err = r.ReadTable(ctx, s.Storage, func(e StorageEntry) error {
		if e.Chunks == nil && e.Size > 0 {
			return fmt.Errorf("%w: %q", ErrNoStorageBytes, e.Key)
		}
		rc := r.openStream(ctx, e.Chunks)
		defer func() { _ = rc.Close() }()
		if _, err := tw.AddObject(e.Key, e.Size, rc); err != nil {
			return fmt.Errorf("repository: export: object %q: %w", e.Key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// errFormatKnown ends ExportFormat's scan of the storage table.
var errFormatKnown = errors.New("format known")

// ExportFormat is the format Export should write s in: .tar.gz when the
// snapshot holds the bytes of its storage objects, .json when it has none
// (an empty bucket, a backup without storage) or only lists them
// (imported from a .json archive).
func (r *Repository) ExportFormat(ctx context.Context, s *Snapshot) (archive.Format, error) {
	if s.Storage.Objects == 0 {
		return archive.JSON, nil
	}
	f := archive.TarGz
	err := r.ReadTable(ctx, s.Storage, func(e StorageEntry) error {
		if e.Size == 0 {
			return nil
		}
		if e.Chunks == nil {
			f = archive.JSON
		}
		return errFormatKnown
	})
	if errors.Is(err, errFormatKnown) {
		err = nil
	}
	return f, err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// writeDocument writes backup.json.
func (r *Repository) writeDocument(ctx context.Context, s *Snapshot, w io.Writer) error {
	jw, err := archive.NewJSONWriter(w, s.Header)
	if err != nil {
		return fmt.Errorf("repository: export: %w", err)
	}
	for _, u := range s.Units {
		if err := r.writeUnit(ctx, jw, u); err != nil {
			return fmt.Errorf("repository: export: %s %s: %w", u.Section, u.Name, err)
		}
	}
	err = r.ReadTable(ctx, s.Storage, func(e StorageEntry) error {
		return jw.StorageObject(archive.Object{Key: e.Key, Size: e.Size, ETag: e.ETag, ContentType: e.ContentType, SHA256: e.SHA256, Path: e.Path})
	})
	if err != nil {
		return fmt.Errorf("repository: export: storage: %w", err)
	}
	return jw.Close()
}

func (r *Repository) writeUnit(ctx context.Context, jw *archive.JSONWriter, u Unit) error {
	stream := r.openStream(ctx, u.Chunks)
	defer func() { _ = stream.Close() }()
	rc := io.MultiReader(stream, bytes.NewReader(u.Tail))
	var err error
	switch u.Section {
	case archive.SectionControlD1:
		_, err = jw.ControlD1(rc)
	case archive.SectionAuthD1:
		_, err = jw.AuthD1(rc)
	case archive.SectionAuthShard:
		_, err = jw.AuthShard(u.Name, rc)
	case archive.SectionDatabase:
		_, err = jw.Database(u.Name, rc)
	case archive.SectionConfig:
		_, err = jw.Config(rc)
	case archive.SectionDataNamespace:
		_, err = jw.DataNamespace(u.Name, rc)
	case archive.SectionSecrets:
		var m map[string]string
		if err = json.NewDecoder(rc).Decode(&m); err == nil {
			_, err = jw.Secrets(m)
		}
	default:
		err = fmt.Errorf("%w: unknown section %q", ErrCorrupt, u.Section)
	}
	return err
}

// importer is the archive.Visitor of Import.
type importer struct {
	archive.NopVisitor
	r       *Repository
	snap    *Snapshot
	vw      *ValueWriter
	objects []archive.Object
	chunks  map[string]ChunkList
}

// Import reads a v1.1 archive into a new snapshot: every section value
// becomes a unit, every storage object an entry of the storage table (with
// its bytes when the archive carries them). meta supplies what the archive
// cannot (source URL, tags, versions). Nothing names the new chunks until
// the archive has validated in full.
func (r *Repository) Import(ctx context.Context, rd io.Reader, f archive.Format, meta Snapshot) (ID, *Snapshot, error) {
	imp, err := r.readArchive(ctx, rd, f, meta)
	if err != nil {
		return ID{}, nil, err
	}
	s := imp.snap
	tw := r.NewTableWriter(ctx)
	for _, o := range imp.objects {
		e := StorageEntry{Key: o.Key, Size: o.Size, ETag: o.ETag, ContentType: o.ContentType, SHA256: o.SHA256, Path: o.Path, Chunks: imp.chunks[o.Key]}
		if err := tw.Add(e); err != nil {
			tw.Abort()
			return ID{}, nil, err
		}
	}
	if s.Storage, err = tw.Close(); err != nil {
		return ID{}, nil, err
	}
	id, err := r.SaveSnapshot(ctx, s)
	return id, s, err
}

func (r *Repository) readArchive(ctx context.Context, rd io.Reader, f archive.Format, meta Snapshot) (*importer, error) {
	s := meta
	s.Units = nil
	imp := &importer{r: r, snap: &s, chunks: map[string]ChunkList{}}
	_, err := archive.Read(ctx, rd, f, imp)
	if imp.vw != nil {
		imp.vw.Abort()
	}
	if err != nil {
		return nil, fmt.Errorf("repository: import: %w", err)
	}
	return imp, nil
}

func (imp *importer) Header(_ context.Context, h archive.Header) error {
	imp.snap.Header = h
	return nil
}

func (imp *importer) BeginValue(ctx context.Context, _ archive.ValueRef) (io.Writer, error) {
	imp.vw = imp.r.w.NewValue(ctx)
	return imp.vw, nil
}

func (imp *importer) EndValue(_ context.Context, ref archive.ValueRef, _ archive.ValueStats) error {
	u, err := imp.vw.Close()
	imp.vw = nil
	if err != nil {
		return err
	}
	u.Section, u.Name = ref.Section, ref.Name
	imp.snap.Units = append(imp.snap.Units, u)
	return nil
}

// ValueWriter stores the raw JSON of one v1.1 section value (a unit)
// written to it, as Import does: chunked as it streams, with a trailing
// "timestamp" member stored as chunks of its own.
type ValueWriter struct {
	ctx  context.Context
	w    *Writer
	pw   *io.PipeWriter
	tail *tailWriter
	done chan tableResult
	size int64
}

// NewValue starts a value. Close it (or Abort it) to end the goroutine
// that chunks it.
func (w *Writer) NewValue(ctx context.Context) *ValueWriter {
	pr, pw := io.Pipe()
	v := &ValueWriter{ctx: ctx, w: w, pw: pw, tail: &tailWriter{w: pw}, done: make(chan tableResult, 1)}
	go func() {
		l, n, err := w.SaveStream(ctx, pr)
		_ = pr.CloseWithError(err)
		v.size = n
		v.done <- tableResult{l, err}
	}()
	return v
}

// Write implements io.Writer.
func (v *ValueWriter) Write(p []byte) (int, error) { return v.tail.Write(p) }

// timestampMember starts the member a DO dump ends with: the time of the
// dump, new bytes in every backup of an unchanged DO.
var timestampMember = []byte(`,"timestamp":`)

// Close ends the value and returns it as a Unit without section and
// name. A trailing "timestamp" member is not chunked: it is the unit's
// Tail, kept in the snapshot itself, so an unchanged value is the same
// chunks as in earlier snapshots and adds nothing to the store (a small
// DO dump is one chunk, which the timestamp would make new every day).
// The unit's bytes are the same either way.
func (v *ValueWriter) Close() (Unit, error) {
	tail := v.tail.tail
	split := bytes.LastIndex(tail, timestampMember)
	if split < 0 {
		split = len(tail)
	}
	_, werr := v.pw.Write(tail[:split])
	_ = v.pw.Close()
	res := <-v.done
	if res.err != nil {
		return Unit{}, res.err
	}
	if werr != nil {
		return Unit{}, werr
	}
	u := Unit{Size: v.size, Chunks: res.list}
	if rest := tail[split:]; len(rest) > 0 {
		u.Tail, u.Size = bytes.Clone(rest), u.Size+int64(len(rest))
	}
	return u, nil
}

// Abort ends the value, discarding it.
func (v *ValueWriter) Abort() {
	_ = v.pw.CloseWithError(errors.New("repository: value aborted"))
	<-v.done
}

// tailHold is how many final bytes of a value tailWriter holds back: room
// for the timestamp member (`,"timestamp":"2026-12-03T07:15:02.850Z"}`).
const tailHold = 96

// tailWriter forwards all but the last tailHold bytes written to it.
type tailWriter struct {
	w    io.Writer
	tail []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - tailHold; over > 0 {
		if _, err := t.w.Write(t.tail[:over]); err != nil {
			return 0, err
		}
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

func (imp *importer) StorageObject(_ context.Context, o archive.Object) error {
	imp.objects = append(imp.objects, o)
	return nil
}

func (imp *importer) StorageMember(ctx context.Context, m archive.Member, rd io.Reader) error {
	l, _, err := imp.r.SaveStream(ctx, rd)
	if err != nil {
		return err
	}
	if l == nil {
		l = ChunkList{}
	}
	imp.chunks[m.Key] = l
	return nil
}
