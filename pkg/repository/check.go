package repository

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"
)

// CheckReport is what Check looked at.
type CheckReport struct {
	Packs        int      `json:"packs"`
	IndexedPacks int      `json:"indexedPacks"`
	Snapshots    int      `json:"snapshots"`
	Chunks       int      `json:"chunks"`
	PacksRead    int      `json:"packsRead"`
	BlobsRead    int64    `json:"blobsRead"`
	Unreferenced []ID     `json:"unreferenced,omitempty"` // packs no index names (left by an interrupted save)
	Errors       []string `json:"errors,omitempty"`
	// Verified lists the snapshots Verify recorded as verified.
	Verified []ID `json:"verified,omitempty"`
	checked  []ID // the snapshots checked
}

// checkLimit bounds the packs read at once (each is held whole while its
// blobs are checked: a few MiB).
const checkLimit = 2

// Check verifies the repository's structure: every index file opens and
// names packs that exist with the size it says, every snapshot opens and
// every chunk it uses (units, storage table, each object) is indexed. With
// readData it re-reads packs — all of them, or subsetPercent (0 < p < 100)
// chosen by pack id — and re-hashes every chunk. It returns every problem
// it finds joined in one error wrapping ErrCorrupt or ErrMissing.
func (r *Repository) Check(ctx context.Context, readData bool, subsetPercent float64) (CheckReport, error) {
	var rep CheckReport
	if err := r.loadIndex(ctx); err != nil {
		return rep, err
	}
	stored := map[ID]int64{}
	if err := r.listIDs(ctx, prefixData, func(id ID, size int64) error { stored[id] = size; return nil }); err != nil {
		return rep, fmt.Errorf("repository: check: list packs: %w", err)
	}
	rep.Packs = len(stored)
	var errs []error
	packs := r.indexedPacks()
	rep.IndexedPacks = len(packs)
	for id, size := range packs {
		got, ok := stored[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: pack %s is indexed but not stored", ErrMissing, id))
		case got != size:
			errs = append(errs, fmt.Errorf("%w: pack %s is %d bytes, the index says %d", ErrCorrupt, id, got, size))
		}
	}
	for id := range stored {
		if _, ok := packs[id]; !ok {
			rep.Unreferenced = append(rep.Unreferenced, id)
		}
	}
	snapErrs, err := r.checkSnapshots(ctx, &rep)
	if err != nil {
		return rep, err
	}
	errs = append(errs, snapErrs...)
	if readData {
		errs = append(errs, r.readPacks(ctx, packs, stored, subsetPercent, &rep)...)
	}
	for _, e := range errs {
		rep.Errors = append(rep.Errors, e.Error())
	}
	return rep, errors.Join(errs...)
}

// indexedPacks maps every indexed pack to its size.
func (r *Repository) indexedPacks() map[ID]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[ID]int64, len(r.packs))
	for id, size := range r.packs {
		out[id] = size
	}
	return out
}

func (r *Repository) checkSnapshots(ctx context.Context, rep *CheckReport) ([]error, error) {
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	rep.Snapshots = len(snaps)
	var errs []error
	seen := map[ID]bool{}
	use := func(where string, l ChunkList) {
		for _, id := range l {
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, err := r.lookup(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
	}
	for _, s := range snaps {
		rep.checked = append(rep.checked, s.ID)
		for _, u := range s.Units {
			use(fmt.Sprintf("snapshot %s: %s %s", s.ID, u.Section, u.Name), u.Chunks)
		}
		use(fmt.Sprintf("snapshot %s: storage table", s.ID), s.Storage.Chunks)
		err := r.ReadTable(ctx, s.Storage, func(e StorageEntry) error {
			use(fmt.Sprintf("snapshot %s: object %q", s.ID, e.Key), e.Chunks)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", s.ID, err))
		}
	}
	rep.Chunks = len(seen)
	return errs, nil
}

// inSubset picks a pack for a partial read by its id: stable across runs,
// spread evenly.
func inSubset(id ID, percent float64) bool {
	if percent <= 0 || percent >= 100 {
		return true
	}
	v := uint32(id[0])<<8 | uint32(id[1])
	return float64(v) < percent/100*65536
}

func (r *Repository) readPacks(ctx context.Context, packs, stored map[ID]int64, percent float64, rep *CheckReport) []error {
	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(checkLimit)
	for id := range packs {
		if _, ok := stored[id]; !ok || !inSubset(id, percent) {
			continue
		}
		g.Go(func() error {
			n, err := r.readPack(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			rep.PacksRead++
			rep.BlobsRead += n
			if err != nil {
				errs = append(errs, err)
			}
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// readPack reads one whole pack and re-hashes every blob against its
// header and the index.
func (r *Repository) readPack(ctx context.Context, id ID) (int64, error) {
	rc, err := r.store.Get(ctx, packKey(id))
	if err != nil {
		return 0, fmt.Errorf("repository: read pack %s: %w", id, err)
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		return 0, fmt.Errorf("repository: read pack %s: %w", id, err)
	}
	entries, err := parsePack(r.seal, id, b)
	if err != nil {
		return 0, err
	}
	ider := newChunkIDer(r.macK)
	var bufs chunkBufs
	var n int64
	for _, e := range entries {
		if _, err := r.openChunk(ider, e.ID, b[e.Offset:e.Offset+e.Length], int(e.RawLength), &bufs, id); err != nil {
			return n, err
		}
		n++
		r.mu.Lock()
		loc, ok := r.index[e.ID]
		r.mu.Unlock()
		if ok && loc.Pack == id && loc.BlobEntry != e {
			return n, fmt.Errorf("%w: pack %s: chunk %s differs from its index entry", ErrCorrupt, id, e.ID)
		}
	}
	return n, nil
}
