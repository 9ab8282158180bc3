package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// ChunkList is a stream's content: the plaintexts of its chunks, in order.
type ChunkList []ID

// SaveStream cuts r into content-defined chunks and stores the ones the
// repository does not hold yet. Memory is one chunk buffer (it grows to
// the largest chunk seen) and the open pack (about PackSize); r is read
// once. Streams may be saved concurrently: chunking, compression and
// encryption run in the caller's goroutine, and a full pack is uploaded
// by the save that filled it while the others go on filling the next.
// The chunks become durable, and visible to other processes, with the
// next Flush (SaveSnapshot flushes).
func (r *Repository) SaveStream(ctx context.Context, rd io.Reader) (ChunkList, int64, error) {
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
		if err := r.saveChunk(ctx, cs, id, ch.Data); err != nil {
			return nil, 0, err
		}
		list = append(list, id)
		size += int64(len(ch.Data))
	}
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
		buf: make([]byte, 0, r.cfg.MinChunk)}
}

// SaveBytes is SaveStream for a small value in memory.
func (r *Repository) SaveBytes(ctx context.Context, b []byte) (ChunkList, error) {
	l, _, err := r.SaveStream(ctx, bytes.NewReader(b))
	return l, err
}

// storedLocked reports whether chunk id needs no storing: indexed outside
// a pack a prune marked, in the open pack, or in a pack being uploaded.
func (r *Repository) storedLocked(id ID) bool {
	loc, ok := r.index[id]
	if _, marked := r.marked[loc.Pack]; ok && !marked {
		return true
	}
	return (r.pack != nil && r.pack.ids[id]) || r.uploading[id]
}

func (r *Repository) saveChunk(ctx context.Context, cs *chunkState, id ID, data []byte) error {
	r.mu.Lock()
	dup := r.storedLocked(id)
	if dup {
		r.stats.ChunksDup++
		r.stats.BytesDup += int64(len(data))
	}
	r.mu.Unlock()
	if dup {
		return nil
	}
	cs.z = r.enc.EncodeAll(data, cs.z[:0])
	r.mu.Lock()
	// A pack waits while maxUploads others are being uploaded: memory
	// stays a few packs however slow the store is.
	for r.inFlight >= maxUploads {
		r.uploaded.Wait()
	}
	if r.storedLocked(id) { // another save stored it meanwhile
		r.stats.ChunksDup++
		r.stats.BytesDup += int64(len(data))
		r.mu.Unlock()
		return nil
	}
	// A blob that does not fit the open pack's buffer closes it, so pack
	// buffers keep their size.
	var full []*packer
	if r.pack != nil && len(r.pack.buf)+len(cs.z)+sealOverhead+r.pack.headerRoom(1) > cap(r.pack.buf) {
		full = append(full, r.detachPackLocked(0))
	}
	if r.pack == nil {
		r.pack = r.newPackLocked()
	}
	if err := r.pack.add(r.seal, id, cs.z, len(data)); err != nil {
		r.mu.Unlock()
		return err
	}
	r.stats.ChunksNew++
	r.stats.BytesNew += int64(len(data))
	full = append(full, r.detachPackLocked(r.cfg.PackSize))
	r.mu.Unlock()
	var err error
	for _, p := range full {
		err = errors.Join(err, r.uploadPack(ctx, p))
	}
	return err
}

// maxUploads bounds the packs being uploaded at once.
const maxUploads = 1

// newPackLocked is an empty pack, on a spare buffer when one is free.
func (r *Repository) newPackLocked() *packer {
	if n := len(r.spare); n > 0 {
		p := r.spare[n-1]
		r.spare = r.spare[:n-1]
		return p
	}
	return newPacker(r.packCap())
}

// packCap is a pack buffer's size: a blob larger than its room closes the
// pack, and only a blob larger than the whole buffer grows one.
func (r *Repository) packCap() int {
	return r.cfg.PackSize + 1<<20
}

// detachPackLocked takes the open pack for upload once it holds at least
// min bytes (and any blob); its chunks count as stored meanwhile.
func (r *Repository) detachPackLocked(min int) *packer {
	p := r.pack
	if p == nil || len(p.entries) == 0 || len(p.buf) < min {
		return nil
	}
	r.pack = nil
	if r.uploading == nil {
		r.uploading = map[ID]bool{}
	}
	for id := range p.ids {
		r.uploading[id] = true
	}
	r.uploads.Add(1)
	r.inFlight++
	return p
}

// uploadPack writes a detached pack and indexes its chunks in memory; the
// index file that makes them visible to others follows at Flush. A failed
// pack is dropped whole: its chunks are in no index, so a snapshot naming
// one fails SaveSnapshot's check, and saving again stores them again.
func (r *Repository) uploadPack(ctx context.Context, p *packer) error {
	if p == nil {
		return nil
	}
	defer r.uploads.Done()
	rec, b, err := p.finish(r.seal)
	if err == nil {
		if err = r.store.Put(ctx, packKey(rec.ID), bytes.NewReader(b)); err != nil {
			err = fmt.Errorf("repository: write pack %s: %w", rec.ID, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	r.uploaded.Broadcast()
	for id := range p.ids {
		delete(r.uploading, id)
	}
	p.reset()
	if len(r.spare) == 0 && cap(p.buf) <= r.packCap() {
		r.spare = append(r.spare, p) // one spare of the usual size
	}
	if err != nil {
		return err
	}
	for _, e := range rec.Blobs {
		r.index[e.ID] = location{Pack: rec.ID, blobEntry: e}
	}
	r.packs[rec.ID] = rec.Size
	r.pending = append(r.pending, rec)
	r.stats.Written += rec.Size
	r.stats.Packs++
	return nil
}

// Flush writes the open pack, waits for the packs being uploaded, and
// writes an index file for every pack written since the last Flush.
func (r *Repository) Flush(ctx context.Context) error {
	r.mu.Lock()
	p := r.detachPackLocked(0)
	r.mu.Unlock()
	err := r.uploadPack(ctx, p)
	r.uploads.Wait()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Pack buffers go until the next save.
	r.spare = nil
	if len(r.pending) == 0 {
		return nil
	}
	_, n, err := r.putSealed(ctx, prefixIndex, aadIndex, indexFile{Packs: r.pending})
	if err != nil {
		return err
	}
	r.pending = nil
	r.stats.Written += n
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
	r.mu.Lock()
	unsaved := (r.pack != nil && r.pack.ids[id]) || r.uploading[id]
	r.mu.Unlock()
	if unsaved {
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
