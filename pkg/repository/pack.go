package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edgevault/edgevault/pkg/blob"
)

// headerEntrySize is one pack header entry: id, offset, length, raw length.
const headerEntrySize = 32 + 4 + 4 + 4

// BlobEntry locates one sealed chunk blob inside a pack.
type BlobEntry struct {
	ID        ID     `json:"id"`
	Offset    uint32 `json:"offset"`
	Length    uint32 `json:"length"`
	RawLength uint32 `json:"rawLength"`
}

// PackRecord is one pack of an index file.
type PackRecord struct {
	ID    ID          `json:"id"`
	Size  int64       `json:"size"`
	Blobs []BlobEntry `json:"blobs"`
}

// location is where the index says a chunk is.
type location struct {
	Pack ID
	BlobEntry
}

// packer accumulates sealed blobs of one pack in one buffer, allocated
// once at its full size and reused for every pack.
type packer struct {
	buf     []byte
	entries []BlobEntry
	ids     map[ID]bool
}

func newPacker(capacity int) *packer {
	return &packer{buf: make([]byte, 0, capacity), ids: map[ID]bool{}}
}

// reset empties p for the next pack, keeping its buffer.
func (p *packer) reset() {
	p.buf = p.buf[:0]
	p.entries = nil
	clear(p.ids)
}

// headerRoom is the room the sealed header takes with more blobs added.
func (p *packer) headerRoom(more int) int {
	return (len(p.entries)+more)*headerEntrySize + sealOverhead + 4
}

// add seals z (the compressed chunk id) straight into the pack. The
// buffer grows (doubling, at most to limit unless one blob needs more)
// as the pack fills.
func (p *packer) add(s sealer, id ID, z []byte, raw, limit int) error {
	if need := len(p.buf) + len(z) + sealOverhead; need > cap(p.buf) {
		grown := make([]byte, len(p.buf), max(need, min(2*cap(p.buf), limit)))
		copy(grown, p.buf)
		p.buf = grown
	}
	off := len(p.buf)
	b, err := s.seal(p.buf, z, id[:])
	if err != nil {
		return err
	}
	p.buf = b
	p.entries = append(p.entries, BlobEntry{ID: id, Offset: uint32(off), Length: uint32(len(b) - off), RawLength: uint32(raw)})
	p.ids[id] = true
	return nil
}

func packKey(id ID) string {
	s := id.String()
	return prefixData + s[:2] + "/" + s
}

// finish appends the sealed header and its length and returns the pack.
func (p *packer) finish(s sealer) (PackRecord, []byte, error) {
	hdr := make([]byte, 0, len(p.entries)*headerEntrySize)
	for _, e := range p.entries {
		hdr = append(hdr, e.ID[:]...)
		hdr = binary.LittleEndian.AppendUint32(hdr, e.Offset)
		hdr = binary.LittleEndian.AppendUint32(hdr, e.Length)
		hdr = binary.LittleEndian.AppendUint32(hdr, e.RawLength)
	}
	start := len(p.buf)
	b, err := s.seal(p.buf, hdr, aadPackHeader)
	if err != nil {
		return PackRecord{}, nil, err
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(b)-start))
	p.buf = b
	return PackRecord{ID: sha256.Sum256(b), Size: int64(len(b)), Blobs: p.entries}, b, nil
}

// parsePack checks a whole pack: its name, header and every blob's place.
// It returns the header entries.
func parsePack(s sealer, id ID, b []byte) ([]BlobEntry, error) {
	if sha256.Sum256(b) != id {
		return nil, fmt.Errorf("%w: pack %s: content does not match its name (SHA-256)", ErrCorrupt, id)
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: pack %s: too short", ErrCorrupt, id)
	}
	hl := int(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if hl > len(b)-4 || hl < sealOverhead {
		return nil, fmt.Errorf("%w: pack %s: bad header length %d", ErrCorrupt, id, hl)
	}
	start := len(b) - 4 - hl
	hdr, err := s.open(nil, b[start:len(b)-4], aadPackHeader)
	if err != nil || len(hdr)%headerEntrySize != 0 {
		return nil, fmt.Errorf("%w: pack %s: header does not open", ErrCorrupt, id)
	}
	entries := make([]BlobEntry, 0, len(hdr)/headerEntrySize)
	for i := 0; i < len(hdr); i += headerEntrySize {
		var e BlobEntry
		copy(e.ID[:], hdr[i:])
		e.Offset = binary.LittleEndian.Uint32(hdr[i+32:])
		e.Length = binary.LittleEndian.Uint32(hdr[i+36:])
		e.RawLength = binary.LittleEndian.Uint32(hdr[i+40:])
		if int64(e.Offset)+int64(e.Length) > int64(start) {
			return nil, fmt.Errorf("%w: pack %s: blob %s lies outside the data", ErrCorrupt, id, e.ID)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// indexFile is an index/<id> file's plaintext.
type indexFile struct {
	Packs []PackRecord `json:"packs"`
}

// putSealed seals v's JSON under aad and writes it under prefix + the
// SHA-256 of the stored bytes.
func (r *Repository) putSealed(ctx context.Context, prefix string, aad []byte, v any) (ID, int64, error) {
	b, err := r.sealJSON(aad, v)
	if err != nil {
		return ID{}, 0, err
	}
	id := hashID(b)
	if err := r.putBytes(ctx, prefix+id.String(), b); err != nil {
		return ID{}, 0, err
	}
	return id, int64(len(b)), nil
}

// sealJSON is the sealed JSON of v.
func (r *Repository) sealJSON(aad []byte, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return r.seal.seal(nil, plain, aad)
}

func (r *Repository) putBytes(ctx context.Context, key string, b []byte) error {
	if err := r.store.Put(ctx, key, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("repository: write %s: %w", key, err)
	}
	return nil
}

// getSealed reads, checks and opens prefix+id into v.
func (r *Repository) getSealed(ctx context.Context, prefix string, id ID, aad []byte, v any) error {
	key := prefix + id.String()
	b, err := getAll(ctx, r.store, key)
	if err != nil {
		return err
	}
	if hashID(b) != id {
		return fmt.Errorf("%w: %s: content does not match its name (SHA-256)", ErrCorrupt, key)
	}
	plain, err := r.seal.open(nil, b, aad)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	return nil
}

// listIDs calls fn with the id of every file under prefix (data/ is two
// levels deep; the id is the last segment).
func (r *Repository) listIDs(ctx context.Context, prefix string, fn func(ID, int64) error) error {
	return r.store.List(ctx, prefix, func(info blob.Info) error {
		name := info.Key[lastSlash(info.Key)+1:]
		id, err := ParseID(name)
		if err != nil {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, info.Key)
		}
		return fn(id, info.Size)
	})
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// loadIndex reads every index file into memory.
func (r *Repository) loadIndex(ctx context.Context) error {
	st := &pruneState{marks: map[ID]time.Time{}}
	if err := r.readMarks(ctx, st); err != nil {
		return fmt.Errorf("repository: load marks: %w", err)
	}
	idx := map[ID]location{}
	packs := map[ID]int64{}
	err := r.listIDs(ctx, prefixIndex, func(id ID, _ int64) error {
		var f indexFile
		if err := r.getSealed(ctx, prefixIndex, id, aadIndex, &f); err != nil {
			return err
		}
		for _, p := range f.Packs {
			packs[p.ID] = p.Size
			_, marked := st.marks[p.ID]
			for _, b := range p.Blobs {
				// Prefer a copy in an unmarked pack.
				if old, ok := idx[b.ID]; !ok || !marked || st.marks[old.Pack] != (time.Time{}) {
					idx[b.ID] = location{Pack: p.ID, BlobEntry: b}
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("repository: load index: %w", err)
	}
	r.mu.Lock()
	r.index = idx
	r.packs = packs
	r.marked = st.marks
	r.mu.Unlock()
	return nil
}
