package repository

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/edgevault/edgevault/pkg/archive"
)

// Snapshot is one backup: the source, when, and every unit and storage
// object as chunk lists.
type Snapshot struct {
	Time      time.Time `json:"time"`
	SourceURL string    `json:"sourceURL,omitempty"`
	// Header is the v1.1 top-level version, timestamp and source.
	Header archive.Header `json:"header"`
	// Server is the EdgeBase behaviour the backup observed.
	Server           *archive.ServerObservations `json:"server,omitempty"`
	EdgevaultVersion string                      `json:"edgevaultVersion,omitempty"`
	// Parent is the snapshot whose storage table this one reused.
	Parent  ID           `json:"parent,omitzero"`
	Tags    []string     `json:"tags,omitempty"`
	Units   []Unit       `json:"units"`
	Storage StorageTable `json:"storage"`
}

// Unit is the raw JSON value of one v1.1 section entry.
type Unit struct {
	Section archive.Section `json:"section"`
	Name    string          `json:"name,omitempty"`
	Size    int64           `json:"size"`
	Chunks  ChunkList       `json:"chunks"`
	// Tail is the value's last bytes, kept in the snapshot rather than
	// chunked: a DO dump's trailing "timestamp" member, new in every
	// backup of an unchanged DO (at most a hundred bytes).
	Tail []byte `json:"tail,omitempty"`
}

// StorageTable is the storage listing of a snapshot, stored as chunks of
// newline-separated StorageEntry JSON.
type StorageTable struct {
	Objects int64     `json:"objects"`
	Bytes   int64     `json:"bytes"`
	Chunks  ChunkList `json:"chunks"`
}

// StorageEntry is one storage object of a snapshot.
type StorageEntry struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ETag        string    `json:"etag"`
	ContentType string    `json:"contentType"`
	SHA256      string    `json:"sha256,omitempty"`
	Path        string    `json:"path,omitempty"`
	Chunks      ChunkList `json:"chunks"`
}

// SnapshotInfo is a stored snapshot and its id.
type SnapshotInfo struct {
	ID ID
	*Snapshot
}

// SaveSnapshot flushes everything saved so far, then writes s (the order
// that keeps a snapshot from ever naming an unindexed chunk).
func (r *Repository) SaveSnapshot(ctx context.Context, s *Snapshot) (ID, error) {
	if err := r.Flush(ctx); err != nil {
		return ID{}, err
	}
	_, b, err := r.SealSnapshot(s)
	if err != nil {
		return ID{}, err
	}
	return r.PutSnapshot(ctx, b)
}

// chunkLists are the lists a snapshot names directly (the storage table's
// entries are inside the table's chunks).
func (s *Snapshot) chunkLists() []ChunkList {
	out := make([]ChunkList, 0, len(s.Units)+1)
	for _, u := range s.Units {
		out = append(out, u.Chunks)
	}
	return append(out, s.Storage.Chunks)
}

// LoadSnapshot reads one snapshot.
func (r *Repository) LoadSnapshot(ctx context.Context, id ID) (*Snapshot, error) {
	var s Snapshot
	if err := r.getSealed(ctx, prefixSnaps, id, aadSnapshot, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// FindSnapshot resolves "latest", a full id or a unique id prefix.
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (SnapshotInfo, error) {
	all, err := r.ListSnapshots(ctx)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if ref == "latest" && len(all) > 0 {
		return all[len(all)-1], nil
	}
	var found []SnapshotInfo
	for _, s := range all {
		if ref != "" && strings.HasPrefix(s.ID.String(), ref) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		return SnapshotInfo{}, fmt.Errorf("repository: snapshot %q: %d match", ref, len(found))
	}
	return found[0], nil
}

// Latest is the newest snapshot of source (by time), ok false when there
// is none.
func (r *Repository) Latest(ctx context.Context, source string) (SnapshotInfo, bool, error) {
	all, err := r.ListSnapshots(ctx)
	if err != nil {
		return SnapshotInfo{}, false, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].SourceURL == source {
			return all[i], true, nil
		}
	}
	return SnapshotInfo{}, false, nil
}

// ListSnapshots reads every snapshot, oldest first.
func (r *Repository) ListSnapshots(ctx context.Context) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	err := r.listIDs(ctx, prefixSnaps, func(id ID, _ int64) error {
		s, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			return err
		}
		out = append(out, SnapshotInfo{ID: id, Snapshot: s})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repository: list snapshots: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// TableWriter streams a storage table into the repository.
type TableWriter struct {
	pw   *io.PipeWriter
	bw   *bufio.Writer
	done chan tableResult
	t    StorageTable
}

type tableResult struct {
	list ChunkList
	err  error
}

// NewTableWriter starts a storage table. Close it (or Abort it) to end the
// goroutine that chunks it.
func (r *Repository) NewTableWriter(ctx context.Context) *TableWriter {
	return r.w.NewTableWriter(ctx)
}

// NewTableWriter starts a storage table whose chunks this writer stores.
func (w *Writer) NewTableWriter(ctx context.Context) *TableWriter {
	pr, pw := io.Pipe()
	tw := &TableWriter{pw: pw, bw: bufio.NewWriterSize(pw, 64<<10), done: make(chan tableResult, 1)}
	go func() {
		l, _, err := w.SaveStream(ctx, pr)
		_ = pr.CloseWithError(err)
		tw.done <- tableResult{l, err}
	}()
	return tw
}

// Add appends one entry.
func (t *TableWriter) Add(e StorageEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := t.bw.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("repository: storage table: %w", err)
	}
	t.t.Objects++
	t.t.Bytes += e.Size
	return nil
}

// Close ends the table and returns it.
func (t *TableWriter) Close() (StorageTable, error) {
	err := t.bw.Flush()
	_ = t.pw.CloseWithError(err)
	res := <-t.done
	if err = errors.Join(err, res.err); err != nil {
		return StorageTable{}, fmt.Errorf("repository: storage table: %w", err)
	}
	t.t.Chunks = res.list
	return t.t, nil
}

// Abort ends the table, discarding it.
func (t *TableWriter) Abort() {
	_ = t.pw.CloseWithError(errors.New("repository: storage table aborted"))
	<-t.done
}

// ReadTable calls fn for every entry of t, in order, streaming.
func (r *Repository) ReadTable(ctx context.Context, t StorageTable, fn func(StorageEntry) error) error {
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(r.LoadStream(ctx, t.Chunks, pw)) }()
	defer func() { _ = pr.Close() }()
	dec := json.NewDecoder(bufio.NewReaderSize(pr, 64<<10))
	var n int64
	for {
		var e StorageEntry
		err := dec.Decode(&e)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("repository: storage table: %w", err)
		}
		n++
		if err := fn(e); err != nil {
			return err
		}
	}
	if n != t.Objects {
		return fmt.Errorf("%w: storage table holds %d entries, its snapshot says %d", ErrCorrupt, n, t.Objects)
	}
	return nil
}
