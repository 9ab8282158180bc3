package snapshot

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/repository"
)

// Storage is a deployment's bucket: listed in byte-wise ascending key
// order (EdgeBase's and R2's order) one object at a time, and read.
type Storage interface {
	List(ctx context.Context, fn func(edgebase.Object) error) error
	backup.ObjectSource
}

// AdminStorage is the bucket through the admin API: one dump-storage
// listing, streamed.
type AdminStorage struct{ *edgebase.Client }

// List streams the listing.
func (s AdminStorage) List(ctx context.Context, fn func(edgebase.Object) error) error {
	_, err := s.ListStorage(ctx, fn)
	return err
}

// DirectStorage is the bucket through R2's S3 API, a page at a time.
type DirectStorage struct{ backup.DirectStorage }

// List streams the pages.
func (s DirectStorage) List(ctx context.Context, fn func(edgebase.Object) error) error {
	return s.ListPages(ctx, "", "", 0, func(page []edgebase.Object) error {
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		return nil
	})
}

// StorageResult is what TakeStorage stored and how.
type StorageResult struct {
	Table repository.StorageTable
	// Reused objects took the parent's chunks without a request;
	// Fetched ones were read from the deployment.
	Reused, Fetched int64
	// FetchedBytes are the bytes read from the deployment.
	FetchedBytes int64
	// Missing objects were listed but deleted before they were read.
	Missing []string
	// Masked objects were served with a hidden content type.
	Masked int64
	// Internal are EdgeBase's own keys, left out.
	Internal int64
}

// maxMissingNamed bounds the missing keys a result names.
const maxMissingNamed = 20

// TakeStorage builds the storage table of a new snapshot: every object of
// src in listing order, the unchanged ones (same key, size and etag as in
// parent) reused, the others read with at most concurrency in flight. Memory
// is bounded by the objects in flight (each streamed into the repository)
// and a window of listed objects waiting for their turn, never by the
// bucket's size. Nothing is saved as a snapshot here: the caller does that
// once the rest of the backup is complete.
func TakeStorage(ctx context.Context, repo *repository.Repository, parent *repository.Snapshot, src Storage, concurrency int) (StorageResult, error) {
	concurrency = max(concurrency, 1)
	var res StorageResult
	var fetchedBytes, masked atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	fetches := &errgroup.Group{}
	fetches.SetLimit(concurrency)
	slots := make(chan *slot, 4*concurrency)
	reuse := repo.NewReuser(gctx, parent)
	g.Go(func() error {
		defer close(slots)
		err := src.List(gctx, func(o edgebase.Object) error {
			if edgebase.IsInternalKey(o.Key) {
				res.Internal++
				return nil
			}
			s := &slot{o: o, done: make(chan struct{})}
			if e, ok, _ := reuse.Lookup(o.Key, o.Size, o.ETag); ok {
				// A parent table that fails to read makes Lookup fetch
				// everything after it: always safe, so not an error here.
				s.e, s.ok = e, true
				close(s.done)
			} else {
				fetches.Go(func() error {
					defer close(s.done)
					s.fetch(gctx, repo, src, &fetchedBytes, &masked)
					return nil
				})
			}
			select {
			case slots <- s:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
		if err != nil {
			return fmt.Errorf("listing storage: %w", err)
		}
		return nil
	})
	tw := repo.NewTableWriter(ctx)
	g.Go(func() error { return res.collect(gctx, slots, tw) })
	err := g.Wait()
	_ = fetches.Wait()
	reuse.Close()
	res.Reused, res.Fetched = reuse.Reused, reuse.Fetched
	res.FetchedBytes, res.Masked = fetchedBytes.Load(), masked.Load()
	if err != nil {
		tw.Abort()
		return res, err
	}
	res.Table, err = tw.Close()
	return res, err
}

// collect adds the slots' entries to the table in listing order.
func (res *StorageResult) collect(ctx context.Context, slots <-chan *slot, tw *repository.TableWriter) error {
	for s := range slots {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		switch {
		case s.err != nil:
			return fmt.Errorf("object %q: %w", s.o.Key, s.err)
		case !s.ok:
			if len(res.Missing) < maxMissingNamed {
				res.Missing = append(res.Missing, s.o.Key)
			}
			continue
		}
		if err := tw.Add(s.e); err != nil {
			return err
		}
	}
	return nil
}

// slot is one listed object on its way into the table.
type slot struct {
	o    edgebase.Object
	done chan struct{}
	e    repository.StorageEntry
	ok   bool // false with no err: deleted since the listing
	err  error
}

// fetch reads the object into the repository.
func (s *slot) fetch(ctx context.Context, repo *repository.Repository, src Storage, fetched, masked *atomic.Int64) {
	var m bool
	s.e, s.ok, m, s.err = backup.FetchEntry(ctx, repo, src, s.o)
	if s.ok {
		fetched.Add(s.e.Size)
		if m {
			masked.Add(1)
		}
	}
}
