package repository

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/edgevault/edgevault/pkg/blob"
)

const prefixMarks = "marks/"

var aadMarks = []byte("edgevault marks")

// markFile is a marks/<id> file: packs found unreferenced, and since when.
type markFile struct {
	Packs map[ID]time.Time `json:"packs"`
}

// PruneOptions tune Prune.
type PruneOptions struct {
	// Grace is how long a pack stays marked before it is deleted; it must
	// exceed the longest backup (from its Open to its snapshot).
	Grace time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// PruneReport says what Prune did.
type PruneReport struct {
	Marked  int   `json:"marked"`  // packs newly marked
	Waiting int   `json:"waiting"` // marked packs still in their grace period
	Rescued int   `json:"rescued"` // marked packs referenced again, unmarked
	Deleted []ID  `json:"deleted"` // packs deleted
	Freed   int64 `json:"freed"`   // their bytes
	// Locked are the files the store refused to delete (blob.ErrLocked:
	// retention, a bucket lock). A refused pack stays marked, so no
	// writer reuses it and a later prune tries again; the packs an index
	// file that could not be deleted names are not deleted either.
	Locked []string `json:"locked,omitempty"`
}

// pruneState is what Prune reads before it changes anything.
type pruneState struct {
	indexFiles []ID
	indexPacks map[ID][]ID       // index file -> the packs it names
	packs      map[ID]PackRecord // indexed packs
	stored     map[ID]int64
	markFiles  []ID
	marks      map[ID]time.Time
	used       map[ID]bool // chunks some snapshot references
}

// Prune deletes packs no snapshot needs, in two phases: a pack found
// unreferenced (or stored but never indexed) is marked, and deleted by a
// later Prune once its grace period has passed and it is still not needed.
// A backup opened after the mark does not reuse marked packs (it stores
// such chunks again); one opened before it finishes within the grace
// period, so a snapshot it writes rescues what it reused. Every step is a
// single write that leaves a valid repository: new index, then old index
// files deleted, then packs, then the marks rewritten; a Prune killed
// anywhere is finished by the next one.
func (r *Repository) Prune(ctx context.Context, o PruneOptions) (PruneReport, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	var rep PruneReport
	if err := r.Flush(ctx); err != nil {
		return rep, err
	}
	// The snapshots' storage tables are read through the index: it must
	// include what other writers indexed since this value loaded it.
	if err := r.loadIndex(ctx); err != nil {
		return rep, err
	}
	st, err := r.readPruneState(ctx)
	if err != nil {
		return rep, fmt.Errorf("repository: prune: %w", err)
	}
	now := o.Now().UTC()
	doomed, marks := planPrune(st, now, o.Grace, &rep)
	if len(doomed) > 0 {
		left, err := r.dropPacks(ctx, st, doomed, &rep)
		if err != nil {
			return rep, fmt.Errorf("repository: prune: %w", err)
		}
		for _, p := range left {
			marks[p] = st.marks[p]
		}
	}
	if err := r.rewriteMarks(ctx, st, marks, &rep); err != nil {
		return rep, fmt.Errorf("repository: prune: %w", err)
	}
	return rep, r.loadIndex(ctx)
}

// planPrune decides which packs to delete now and which stay marked.
func planPrune(st *pruneState, now time.Time, grace time.Duration, rep *PruneReport) (map[ID]bool, map[ID]time.Time) {
	needed := func(p ID) bool {
		for _, b := range st.packs[p].Blobs {
			if st.used[b.ID] {
				return true
			}
		}
		return false
	}
	marks := map[ID]time.Time{}
	for p := range st.stored {
		if needed(p) {
			continue
		}
		if t, ok := st.marks[p]; ok {
			marks[p] = t
		} else {
			marks[p] = now
			rep.Marked++
		}
	}
	for p := range st.marks {
		if _, ok := marks[p]; !ok {
			if _, stored := st.stored[p]; stored {
				rep.Rescued++
			}
		}
	}
	// A marked pack whose needed chunks all have a copy in an unmarked
	// pack may go too (a backup after the mark stored them again).
	copies := map[ID]bool{}
	for p, rec := range st.packs {
		if _, marked := st.marks[p]; !marked {
			for _, b := range rec.Blobs {
				copies[b.ID] = true
			}
		}
	}
	for p, t := range st.marks {
		if _, ok := marks[p]; ok || st.stored[p] == 0 {
			continue
		}
		redundant := true
		for _, b := range st.packs[p].Blobs {
			redundant = redundant && (!st.used[b.ID] || copies[b.ID])
		}
		if redundant {
			marks[p] = t
			rep.Rescued--
		}
	}
	doomed := map[ID]bool{}
	for p, t := range marks {
		if !now.Before(t.Add(grace)) && t.Before(now) {
			doomed[p] = true
			delete(marks, p)
		}
	}
	rep.Waiting = len(marks)
	return doomed, marks
}

func (r *Repository) readPruneState(ctx context.Context) (*pruneState, error) {
	st := &pruneState{packs: map[ID]PackRecord{}, indexPacks: map[ID][]ID{}, stored: map[ID]int64{}, marks: map[ID]time.Time{}, used: map[ID]bool{}}
	err := r.listIDs(ctx, prefixIndex, func(id ID, _ int64) error {
		var f indexFile
		if err := r.getSealed(ctx, prefixIndex, id, aadIndex, &f); err != nil {
			return err
		}
		st.indexFiles = append(st.indexFiles, id)
		for _, p := range f.Packs {
			st.packs[p.ID] = p
			st.indexPacks[id] = append(st.indexPacks[id], p.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := r.listIDs(ctx, prefixData, func(id ID, n int64) error { st.stored[id] = n; return nil }); err != nil {
		return nil, err
	}
	if err := r.readMarks(ctx, st); err != nil {
		return nil, err
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		for _, l := range s.chunkLists() {
			for _, id := range l {
				st.used[id] = true
			}
		}
		use := func(e StorageEntry) error {
			for _, id := range e.Chunks {
				st.used[id] = true
			}
			return nil
		}
		err := r.ReadTable(ctx, s.Storage, use)
		if errors.Is(err, ErrMissing) {
			// A snapshot saved after the index was loaded: its index
			// file is stored by now.
			if err = r.loadIndex(ctx); err == nil {
				err = r.ReadTable(ctx, s.Storage, use)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.ID, err)
		}
	}
	return st, nil
}

func (r *Repository) readMarks(ctx context.Context, st *pruneState) error {
	return r.listIDs(ctx, prefixMarks, func(id ID, _ int64) error {
		var m markFile
		if err := r.getSealed(ctx, prefixMarks, id, aadMarks, &m); err != nil {
			return err
		}
		st.markFiles = append(st.markFiles, id)
		for p, t := range m.Packs {
			if old, ok := st.marks[p]; !ok || t.Before(old) {
				st.marks[p] = t
			}
		}
		return nil
	})
}

// dropPacks writes an index without the doomed packs, deletes the index
// files it replaces, then the packs. It returns the doomed packs the
// store would not delete, or that an index file it would not delete
// still names.
func (r *Repository) dropPacks(ctx context.Context, st *pruneState, doomed map[ID]bool, rep *PruneReport) ([]ID, error) {
	var keep indexFile
	for id, p := range st.packs {
		if !doomed[id] {
			keep.Packs = append(keep.Packs, p)
		}
	}
	sort.Slice(keep.Packs, func(i, j int) bool { return keep.Packs[i].ID.String() < keep.Packs[j].ID.String() })
	var newID ID
	if len(keep.Packs) > 0 {
		var err error
		if newID, _, err = r.putSealed(ctx, prefixIndex, aadIndex, keep); err != nil {
			return nil, err
		}
	}
	stillIndexed := map[ID]bool{}
	for _, id := range st.indexFiles {
		if id == newID {
			continue
		}
		err := r.store.Delete(ctx, prefixIndex+id.String())
		if errors.Is(err, blob.ErrLocked) {
			rep.Locked = append(rep.Locked, prefixIndex+id.String())
			for _, p := range st.indexPacks[id] {
				stillIndexed[p] = true
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("delete index %s: %w", id, err)
		}
	}
	ids := make([]ID, 0, len(doomed))
	for id := range doomed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	var left []ID
	for _, id := range ids {
		if stillIndexed[id] {
			left = append(left, id)
			continue
		}
		err := r.store.Delete(ctx, packKey(id))
		if errors.Is(err, blob.ErrLocked) {
			rep.Locked = append(rep.Locked, packKey(id))
			left = append(left, id)
			continue
		}
		if err != nil {
			return left, fmt.Errorf("delete pack %s: %w", id, err)
		}
		rep.Deleted = append(rep.Deleted, id)
		rep.Freed += st.stored[id]
	}
	return left, nil
}

// rewriteMarks writes the marks that remain as one file, then deletes the
// files it replaces.
func (r *Repository) rewriteMarks(ctx context.Context, st *pruneState, marks map[ID]time.Time, rep *PruneReport) error {
	var newID ID
	if len(marks) > 0 {
		var err error
		if newID, _, err = r.putSealed(ctx, prefixMarks, aadMarks, markFile{Packs: marks}); err != nil {
			return err
		}
	}
	for _, id := range st.markFiles {
		if id == newID {
			continue
		}
		err := r.store.Delete(ctx, prefixMarks+id.String())
		if errors.Is(err, blob.ErrLocked) {
			// An old mark only keeps a pack from reuse a while longer.
			rep.Locked = append(rep.Locked, prefixMarks+id.String())
			continue
		}
		if err != nil {
			return fmt.Errorf("delete marks %s: %w", id, err)
		}
	}
	return nil
}
