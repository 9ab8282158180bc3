package repository

import (
	"context"
	"iter"
)

// Reuser decides, object by object, whether a storage object is unchanged
// since the parent snapshot, so that its bytes need not be fetched again:
// same key, size and etag as the parent's entry means the parent's chunk
// list is the object's. It walks the parent's storage table forward, once,
// alongside a listing in the same byte-wise ascending key order (the order
// of EdgeBase's listing and of the tables it writes), so memory does not
// grow with the number of objects. A key out of order is never matched:
// the object is fetched, which is always safe.
type Reuser struct {
	r    *Repository
	next func() (StorageEntry, error, bool)
	stop func()
	cur  *StorageEntry
	last string
	err  error
	// Reused and Fetched count Lookup's answers.
	Reused, Fetched int64
}

// NewReuser starts a Reuser over parent's storage table; a nil parent
// reuses nothing. Close it when done.
func (r *Repository) NewReuser(ctx context.Context, parent *Snapshot) *Reuser {
	u := &Reuser{r: r}
	if parent == nil || parent.Storage.Objects == 0 {
		u.next = func() (StorageEntry, error, bool) { return StorageEntry{}, nil, false }
		u.stop = func() {}
		return u
	}
	seq := func(yield func(StorageEntry, error) bool) {
		stopped := false
		err := r.ReadTable(ctx, parent.Storage, func(e StorageEntry) error {
			if !yield(e, nil) {
				stopped = true
				return errStop
			}
			return nil
		})
		if err != nil && !stopped {
			yield(StorageEntry{}, err)
		}
	}
	u.next, u.stop = iter.Pull2(iter.Seq2[StorageEntry, error](seq))
	return u
}

// Lookup returns the parent's entry for an object listed now with key,
// size and etag when the parent holds the same object, and false when the
// object must be fetched. An error reading the parent's table is returned
// once; after it every object is fetched.
func (u *Reuser) Lookup(key string, size int64, etag string) (StorageEntry, bool, error) {
	if key < u.last || u.err != nil {
		u.Fetched++
		return StorageEntry{}, false, nil
	}
	u.last = key
	for u.cur == nil || u.cur.Key < key {
		e, err, ok := u.next()
		if !ok {
			break
		}
		if err != nil {
			u.err = err
			u.Fetched++
			return StorageEntry{}, false, err
		}
		u.cur = &e
	}
	if u.cur != nil && u.cur.Key == key && u.cur.Size == size && u.cur.ETag == etag && etag != "" && u.r.usable(u.cur.Chunks) {
		u.Reused++
		return *u.cur, true, nil
	}
	u.Fetched++
	return StorageEntry{}, false, nil
}

// usable reports whether every chunk of l is indexed outside the packs a
// prune marked (those may be deleted; their chunks are stored again).
func (r *Repository) usable(l ChunkList) bool {
	if l == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range l {
		loc, ok := r.index[id]
		if _, marked := r.marked[loc.Pack]; !ok || marked {
			return false
		}
	}
	return true
}

// Close ends the walk of the parent's table.
func (u *Reuser) Close() { u.stop() }
