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
// repository does not hold yet. Memory is one chunk buffer (MaxChunk) and
// the open pack (about PackSize); r is read once. The chunks become
// durable, and visible to other processes, with the next Flush (SaveSnapshot
// flushes).
func (r *Repository) SaveStream(ctx context.Context, rd io.Reader) (ChunkList, int64, error) {
	cs := r.chunkers.Get().(*chunkState)
	defer func() {
		// A pooled chunker must not keep the caller's reader alive.
		cs.c.ResetWithBoundaries(nil, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk)
		r.chunkers.Put(cs)
	}()
	cs.c.ResetWithBoundaries(rd, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk)
	c, buf := cs.c, cs.buf
	ider := newChunkIDer(r.macK)
	var list ChunkList
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		ch, err := c.Next(buf)
		if errors.Is(err, io.EOF) {
			return list, size, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("repository: save: %w", err)
		}
		id := ider.id(ch.Data)
		if err := r.saveChunk(ctx, id, ch.Data); err != nil {
			return nil, 0, err
		}
		list = append(list, id)
		size += int64(len(ch.Data))
	}
}

// chunkState is a chunker and its chunk buffer, reused across streams so
// that many small objects do not each allocate MaxChunk bytes.
type chunkState struct {
	c   *chunker.Chunker
	buf []byte
}

func (r *Repository) newChunkState() any {
	return &chunkState{c: chunker.NewWithBoundaries(nil, r.cfg.ChunkerPolynomial, r.cfg.MinChunk, r.cfg.MaxChunk), buf: make([]byte, r.cfg.MaxChunk)}
}

// SaveBytes is SaveStream for a small value in memory.
func (r *Repository) SaveBytes(ctx context.Context, b []byte) (ChunkList, error) {
	l, _, err := r.SaveStream(ctx, bytes.NewReader(b))
	return l, err
}

func (r *Repository) saveChunk(ctx context.Context, id ID, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	loc, ok := r.index[id]
	if _, marked := r.marked[loc.Pack]; (ok && !marked) || (r.pack != nil && r.pack.ids[id]) {
		r.stats.ChunksDup++
		r.stats.BytesDup += int64(len(data))
		return nil
	}
	// The buffers are allocated once and reused: a few MiB allocated per
	// chunk would let the heap run far ahead of what is live.
	bound := int(r.cfg.MaxChunk) + int(r.cfg.MaxChunk)/64 + 4096 // zstd's worst case, with room
	if r.pack == nil {
		r.pack = newPacker(r.cfg.PackSize + bound + sealOverhead)
		r.zbuf = make([]byte, 0, bound)
	}
	r.zbuf = r.enc.EncodeAll(data, r.zbuf[:0])
	if err := r.pack.add(r.seal, id, r.zbuf, len(data)); err != nil {
		return err
	}
	r.stats.ChunksNew++
	r.stats.BytesNew += int64(len(data))
	if len(r.pack.buf) >= r.cfg.PackSize {
		return r.writePackLocked(ctx)
	}
	return nil
}

// writePackLocked uploads the open pack and indexes its chunks in memory;
// the index file that makes them visible to others follows at Flush.
func (r *Repository) writePackLocked(ctx context.Context) error {
	p := r.pack
	if p == nil || len(p.entries) == 0 {
		return nil
	}
	// A failed pack is dropped whole: its chunks are in no index, so a
	// snapshot naming one fails SaveSnapshot's check, and saving again
	// stores them again.
	rec, b, err := p.finish(r.seal)
	if err != nil {
		p.reset()
		return err
	}
	if err := r.store.Put(ctx, packKey(rec.ID), bytes.NewReader(b)); err != nil {
		p.reset()
		return fmt.Errorf("repository: write pack %s: %w", rec.ID, err)
	}
	r.pack.reset()
	for _, e := range rec.Blobs {
		r.index[e.ID] = location{Pack: rec.ID, blobEntry: e}
	}
	r.packs[rec.ID] = rec.Size
	r.pending = append(r.pending, rec)
	r.stats.Written += rec.Size
	r.stats.Packs++
	return nil
}

// Flush writes the open pack and an index file for every pack written
// since the last Flush.
func (r *Repository) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushLocked(ctx)
}

func (r *Repository) flushLocked(ctx context.Context) error {
	if err := r.writePackLocked(ctx); err != nil {
		return err
	}
	// The pack and compression buffers go until the next save.
	r.pack, r.zbuf = nil, nil
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
	defer r.mu.Unlock()
	if r.pack != nil && r.pack.ids[id] {
		if err := r.flushLocked(ctx); err != nil {
			return location{}, err
		}
	}
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
