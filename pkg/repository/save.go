package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/restic/chunker"
)

// ChunkList is a stream's content: the plaintexts of its chunks, in order.
type ChunkList []ID

// Writer stores chunks in packs of its own. The repository's own writer
// (Repository.SaveStream, Flush) indexes its packs as they are uploaded
// and writes an index file at Flush. A writer made by NewWriter writes
// packs and nothing else: Finish hands back the records of its packs, and
// whoever decides that they belong to a snapshot writes them into the
// index (IndexWriter). A chunk needs no storing when the repository's
// loaded index holds it outside a marked pack, or when this writer stored
// it; never because another writer did, whose packs may never be indexed
// (a pipeline task whose output is superseded by a redelivery's).
type Writer struct {
	r      *Repository
	shared bool

	mu        sync.Mutex // guards everything below
	pack      *packer    // the open pack, nil when none
	spare     []*packer  // emptied pack buffers, reused
	uploading map[ID]bool
	own       map[ID]bool    // chunks of the packs this writer uploaded (not shared)
	uploads   sync.WaitGroup // packs being uploaded
	inFlight  int            // their number
	uploaded  *sync.Cond     // signalled (on mu) when one finishes
	records   []PackRecord   // packs uploaded since the last Flush or Finish
	stats     Stats
}

// NewWriter starts a writer whose packs no index names until the caller
// writes their records (Finish, then an IndexWriter). Writers may run
// concurrently, in one process or many.
func (r *Repository) NewWriter() *Writer { return r.newWriter(false) }

func (r *Repository) newWriter(shared bool) *Writer {
	w := &Writer{r: r, shared: shared, uploading: map[ID]bool{}}
	if !shared {
		w.own = map[ID]bool{}
	}
	w.uploaded = sync.NewCond(&w.mu)
	return w
}

// SaveStream cuts r into content-defined chunks and stores the ones the
// repository does not hold yet. Memory is one chunk buffer (it grows to
// the largest chunk seen) and the open pack (about PackSize); r is read
// once. Streams may be saved concurrently: chunking, compression and
// encryption run in the caller's goroutine, and a full pack is uploaded
// by the save that filled it while the others go on filling the next.
// The chunks become durable, and visible to other processes, with the
// next Flush (SaveSnapshot flushes).
func (r *Repository) SaveStream(ctx context.Context, rd io.Reader) (ChunkList, int64, error) {
	return r.w.SaveStream(ctx, rd)
}

// SaveBytes is SaveStream for a small value in memory.
func (r *Repository) SaveBytes(ctx context.Context, b []byte) (ChunkList, error) {
	return r.w.SaveBytes(ctx, b)
}

// SaveStream cuts rd into chunks and stores the ones not stored yet (see
// Repository.SaveStream).
func (w *Writer) SaveStream(ctx context.Context, rd io.Reader) (ChunkList, int64, error) {
	r := w.r
	cs := r.chunkers.Get().(*chunkState)
	defer func() {
		// A pooled chunker must not keep the caller's reader alive.
		cs.c.ResetWithBoundaries(nil, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk)
		r.chunkers.Put(cs)
	}()
	cs.c.ResetWithBoundaries(rd, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk)
	var list ChunkList
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		ch, err := cs.c.Next(cs.buf)
		if errors.Is(err, io.EOF) {
			return list, size, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("repository: save: %w", err)
		}
		cs.buf = ch.Data[:0] // Next grows the buffer as a chunk needs
		id := cs.ider.id(ch.Data)
		if err := w.saveChunk(ctx, cs, id, ch.Data); err != nil {
			return nil, 0, err
		}
		list = append(list, id)
		size += int64(len(ch.Data))
	}
}

// SaveBytes is SaveStream for a small value in memory.
func (w *Writer) SaveBytes(ctx context.Context, b []byte) (ChunkList, error) {
	l, _, err := w.SaveStream(ctx, bytes.NewReader(b))
	return l, err
}

// Stats counts what this writer stored.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// chunkState is a chunker and the buffers of one saving goroutine, reused
// across streams so that many small objects do not each allocate them.
type chunkState struct {
	c      *chunker.Chunker
	ider   *chunkIDer
	buf, z []byte
}

func (r *Repository) newChunkState() any {
	return &chunkState{c: chunker.NewWithBoundaries(nil, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk), ider: newChunkIDer(r.macK),
		buf: make([]byte, 0, 64<<10)} // grown by Next as chunks need
}

// indexed reports whether chunk id is indexed outside a pack a prune
// marked; durable leaves out the packs of the repository's own writer
// that no index file names yet (a Writer's chunks must be in an index
// file or in its own packs).
func (r *Repository) indexed(id ID, durable bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	loc, ok := r.index[id]
	_, marked := r.marked[loc.Pack]
	return ok && !marked && !(durable && r.unflushed[loc.Pack])
}

// storedLocked reports whether chunk id needs no storing: indexed outside
// a pack a prune marked, or in this writer's open, uploading or uploaded
// packs.
func (w *Writer) storedLocked(id ID) bool {
	if (w.pack != nil && w.pack.ids[id]) || w.uploading[id] || w.own[id] {
		return true
	}
	return w.r.indexed(id, !w.shared)
}

// holds reports whether chunk id is in a pack of w not uploaded yet.
func (w *Writer) holds(id ID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return (w.pack != nil && w.pack.ids[id]) || w.uploading[id]
}

func (w *Writer) count(dup bool, n int) {
	add := func(s *Stats) {
		if dup {
			s.ChunksDup++
			s.BytesDup += int64(n)
		} else {
			s.ChunksNew++
			s.BytesNew += int64(n)
		}
	}
	add(&w.stats)
	w.r.mu.Lock()
	add(&w.r.stats)
	w.r.mu.Unlock()
}

func (w *Writer) saveChunk(ctx context.Context, cs *chunkState, id ID, data []byte) error {
	w.mu.Lock()
	dup := w.storedLocked(id)
	if dup {
		w.count(true, len(data))
	}
	w.mu.Unlock()
	if dup {
		return nil
	}
	r := w.r
	cs.z = r.enc.EncodeAll(data, cs.z[:0])
	w.mu.Lock()
	// A pack waits while maxUploads others are being uploaded: memory
	// stays a few packs however slow the store is.
	for w.inFlight >= maxUploads {
		w.uploaded.Wait()
	}
	if w.storedLocked(id) { // another save stored it meanwhile
		w.count(true, len(data))
		w.mu.Unlock()
		return nil
	}
	// A blob that does not fit the open pack's buffer closes it, so pack
	// buffers keep their size.
	var full []*packer
	if w.pack != nil && len(w.pack.buf)+len(cs.z)+sealOverhead+w.pack.headerRoom(1) > max(r.packCap(), cap(w.pack.buf)) {
		full = append(full, w.detachPackLocked(0))
	}
	if w.pack == nil {
		w.pack = w.newPackLocked()
	}
	if err := w.pack.add(r.seal, id, cs.z, len(data), r.packCap()); err != nil {
		w.mu.Unlock()
		return err
	}
	w.count(false, len(data))
	full = append(full, w.detachPackLocked(r.cfg.PackSize))
	w.mu.Unlock()
	var err error
	for _, p := range full {
		err = errors.Join(err, w.uploadPack(ctx, p))
	}
	return err
}

// maxUploads bounds the packs of one writer being uploaded at once.
const maxUploads = 1

// newPackLocked is an empty pack, on a spare buffer when one is free
// (this writer's, or one a finished writer left in the repository's
// pool). A new buffer starts small and grows with the pack up to
// packCap: a task that stores one small DO dump holds kilobytes, not a
// full pack's buffer.
func (w *Writer) newPackLocked() *packer {
	if n := len(w.spare); n > 0 {
		p := w.spare[n-1]
		w.spare = w.spare[:n-1]
		return p
	}
	if p, ok := w.r.packers.Get().(*packer); ok {
		return p
	}
	return newPacker(initialPackBuffer)
}

// initialPackBuffer is a new pack buffer's capacity.
const initialPackBuffer = 64 << 10

// packCap is a pack buffer's size: a blob larger than its room closes the
// pack, and only a blob larger than the whole buffer grows one.
func (r *Repository) packCap() int {
	return r.cfg.PackSize + 1<<20
}

// detachPackLocked takes the open pack for upload once it holds at least
// min bytes (and any blob); its chunks count as stored meanwhile.
func (w *Writer) detachPackLocked(min int) *packer {
	p := w.pack
	if p == nil || len(p.entries) == 0 || len(p.buf) < min {
		return nil
	}
	w.pack = nil
	for id := range p.ids {
		w.uploading[id] = true
	}
	w.uploads.Add(1)
	w.inFlight++
	return p
}

// uploadPack writes a detached pack and records it: the repository's own
// writer indexes its chunks in memory (the index file follows at Flush),
// another writer keeps them as its own. A failed pack is dropped whole:
// its chunks are in no index, so a snapshot naming one fails
// SaveSnapshot's check, and saving again stores them again.
func (w *Writer) uploadPack(ctx context.Context, p *packer) error {
	if p == nil {
		return nil
	}
	defer w.uploads.Done()
	r := w.r
	rec, b, err := p.finish(r.seal)
	if err == nil {
		if err = r.store.Put(ctx, packKey(rec.ID), bytes.NewReader(b)); err != nil {
			err = fmt.Errorf("repository: write pack %s: %w", rec.ID, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	w.uploaded.Broadcast()
	for id := range p.ids {
		delete(w.uploading, id)
	}
	p.reset()
	if len(w.spare) == 0 && cap(p.buf) <= r.packCap() {
		w.spare = append(w.spare, p) // one spare of the usual size
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	if w.shared {
		r.addLocked(rec)
		r.unflushed[rec.ID] = true
	}
	r.stats.Written += rec.Size
	r.stats.Packs++
	r.mu.Unlock()
	if !w.shared {
		for _, e := range rec.Blobs {
			w.own[e.ID] = true
		}
	}
	w.records = append(w.records, rec)
	w.stats.Written += rec.Size
	w.stats.Packs++
	return nil
}

// addLocked adds an indexed pack to the in-memory index.
func (r *Repository) addLocked(rec PackRecord) {
	for _, e := range rec.Blobs {
		r.index[e.ID] = location{Pack: rec.ID, BlobEntry: e}
	}
	r.packs[rec.ID] = rec.Size
}

// drain writes the open pack and waits for the packs being uploaded.
func (w *Writer) drain(ctx context.Context) error {
	w.mu.Lock()
	p := w.detachPackLocked(0)
	w.mu.Unlock()
	err := w.uploadPack(ctx, p)
	w.uploads.Wait()
	w.mu.Lock()
	for _, p := range w.spare { // for the next writer, until the GC takes them
		w.r.packers.Put(p)
	}
	w.spare = nil
	w.mu.Unlock()
	return err
}

// Finish writes the open pack, waits for the packs being uploaded and
// returns the records of every pack this writer uploaded since the last
// Finish. It writes no index: until an index file names them the packs
// are garbage a prune may remove (after its grace period).
func (w *Writer) Finish(ctx context.Context) ([]PackRecord, error) {
	if err := w.drain(ctx); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	recs := w.records
	w.records = nil
	return recs, nil
}

// Flush writes the open pack, waits for the packs being uploaded, and
// writes an index file for every pack written since the last Flush.
func (r *Repository) Flush(ctx context.Context) error {
	w := r.w
	if err := w.drain(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.records) == 0 {
		return nil
	}
	_, n, err := r.putSealed(ctx, prefixIndex, aadIndex, indexFile{Packs: w.records})
	if err != nil {
		return err
	}
	r.mu.Lock()
	for _, rec := range w.records {
		delete(r.unflushed, rec.ID)
	}
	r.stats.Written += n
	r.mu.Unlock()
	w.records = nil
	return nil
}

// LoadStream writes the plaintext of list to w, checking every chunk (it
// must open under the repository key and hash to its id).
func (r *Repository) LoadStream(ctx context.Context, list ChunkList, w io.Writer) error {
	ider := newChunkIDer(r.macK)
	var bufs chunkBufs
	for _, id := range list {
		b, err := r.loadChunk(ctx, ider, id, &bufs)
		if err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repository) lookup(ctx context.Context, id ID) (location, error) {
	if r.w.holds(id) {
		if err := r.Flush(ctx); err != nil {
			return location{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	loc, ok := r.index[id]
	if !ok {
		return loc, fmt.Errorf("%w: chunk %s is not in the index", ErrMissing, id)
	}
	return loc, nil
}

// chunkBufs are the buffers one reader reuses from chunk to chunk.
type chunkBufs struct{ sealed, plain []byte }

func (r *Repository) loadChunk(ctx context.Context, ider *chunkIDer, id ID, bufs *chunkBufs) ([]byte, error) {
	loc, err := r.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	rc, err := r.store.GetRange(ctx, packKey(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("repository: chunk %s: read pack %s: %w", id, loc.Pack, err)
	}
	if cap(bufs.sealed) < int(loc.Length) {
		bufs.sealed = make([]byte, loc.Length)
	}
	sealed := bufs.sealed[:loc.Length]
	_, err = io.ReadFull(rc, sealed)
	_ = rc.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s: pack %s is short: %v", ErrCorrupt, id, loc.Pack, err)
	}
	return r.openChunk(ider, id, sealed, int(loc.RawLength), bufs, loc.Pack)
}

// openChunk decrypts, decompresses and re-hashes one sealed blob.
func (r *Repository) openChunk(ider *chunkIDer, id ID, sealed []byte, raw int, bufs *chunkBufs, pack ID) ([]byte, error) {
	// Decrypted in place: the plaintext overwrites the ciphertext.
	z, err := r.seal.open(sealed[nonceSize:nonceSize], sealed, id[:])
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s in pack %s does not decrypt (changed bytes or wrong key)", ErrCorrupt, id, pack)
	}
	if cap(bufs.plain) < raw {
		bufs.plain = make([]byte, 0, raw)
	}
	plain, err := r.dec.DecodeAll(z, bufs.plain[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s in pack %s: decompress: %v", ErrCorrupt, id, pack, err)
	}
	bufs.plain = plain
	if len(plain) != raw || ider.id(plain) != id {
		return nil, fmt.Errorf("%w: chunk %s in pack %s: content does not hash to its id", ErrCorrupt, id, pack)
	}
	return plain, nil
}
