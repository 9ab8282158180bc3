package repository

import (
	"context"
	"fmt"
)

// MaxIndexBlobs bounds the blob entries of one index file an IndexWriter
// writes (about 200 bytes of JSON each), so that neither it nor a reader
// holds more than a few MiB of one file.
const MaxIndexBlobs = 50_000

// IndexWriter writes pack records into index files of at most
// MaxIndexBlobs entries each, so memory stays one file's worth however
// many packs a backup wrote. A pack already in the loaded index is left
// out (a repeated run of the same step adds no second entry for it). The
// packs it indexes join the repository's in-memory index.
type IndexWriter struct {
	r     *Repository
	cur   []PackRecord
	blobs int
	seen  map[ID]bool
	// Files counts the index files written.
	Files int
}

// NewIndexWriter starts writing index files.
func (r *Repository) NewIndexWriter() *IndexWriter {
	return &IndexWriter{r: r, seen: map[ID]bool{}}
}

// Add queues records; a file is written once MaxIndexBlobs entries are
// queued.
func (iw *IndexWriter) Add(ctx context.Context, recs ...PackRecord) error {
	for _, rec := range recs {
		iw.r.mu.Lock()
		_, indexed := iw.r.packs[rec.ID]
		iw.r.mu.Unlock()
		if indexed || iw.seen[rec.ID] {
			continue
		}
		iw.seen[rec.ID] = true
		iw.cur = append(iw.cur, rec)
		iw.blobs += len(rec.Blobs)
		if iw.blobs >= MaxIndexBlobs {
			if err := iw.write(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close writes the queued records.
func (iw *IndexWriter) Close(ctx context.Context) error {
	return iw.write(ctx)
}

func (iw *IndexWriter) write(ctx context.Context) error {
	if len(iw.cur) == 0 {
		return nil
	}
	_, n, err := iw.r.putSealed(ctx, prefixIndex, aadIndex, indexFile{Packs: iw.cur})
	if err != nil {
		return fmt.Errorf("repository: index: %w", err)
	}
	iw.r.mu.Lock()
	for _, rec := range iw.cur {
		iw.r.addLocked(rec)
	}
	iw.r.stats.Written += n
	iw.r.mu.Unlock()
	iw.Files++
	iw.cur, iw.blobs = nil, 0
	return nil
}

// Reload reads the index files and marks again: what other processes
// indexed or a prune marked since this repository was opened. A process
// that keeps a repository open across backups reloads before each, so
// it never reuses a chunk of a pack a prune marked and may have deleted.
// Packs of the repository's own writer not flushed yet stay indexed.
func (r *Repository) Reload(ctx context.Context) error {
	if err := r.loadIndex(ctx); err != nil {
		return err
	}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.w.records {
		r.addLocked(rec)
	}
	return nil
}

// SealSnapshot checks that every chunk list s names is indexed and seals
// it: the bytes PutSnapshot stores as snapshots/<id>. A step that may run
// twice (an assembler killed after writing the snapshot) keeps the bytes
// of its first run and stores those again, so it writes one snapshot,
// not two.
func (r *Repository) SealSnapshot(s *Snapshot) (ID, []byte, error) {
	if s.Time.IsZero() {
		s.Time = r.now().UTC()
	}
	r.mu.Lock()
	for _, l := range s.chunkLists() {
		for _, id := range l {
			if _, ok := r.index[id]; !ok {
				r.mu.Unlock()
				return ID{}, nil, fmt.Errorf("%w: snapshot names chunk %s, which is not indexed", ErrMissing, id)
			}
		}
	}
	r.mu.Unlock()
	b, err := r.sealJSON(aadSnapshot, s)
	if err != nil {
		return ID{}, nil, err
	}
	return hashID(b), b, nil
}

// PutSnapshot stores sealed snapshot bytes (from SealSnapshot) under
// their id. Bytes that do not open as a snapshot are refused.
func (r *Repository) PutSnapshot(ctx context.Context, b []byte) (ID, error) {
	if _, err := r.seal.open(nil, b, aadSnapshot); err != nil {
		return ID{}, fmt.Errorf("%w: not a sealed snapshot of this repository", ErrCorrupt)
	}
	id := hashID(b)
	if err := r.putBytes(ctx, prefixSnaps+id.String(), b); err != nil {
		return ID{}, err
	}
	r.mu.Lock()
	r.stats.Written += int64(len(b))
	r.mu.Unlock()
	return id, nil
}
