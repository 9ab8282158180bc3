// Package r2floor is the raw floor of storage through R2 direct, shared by
// the benchmarks: the bucket listed and every object read, bodies
// discarded, through the same adapter edgevault uses (pkg/r2).
package r2floor

import (
	"context"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/r2"
)

// Read lists s and GETs every object with inFlight requests in flight; it
// returns the objects and bytes read.
func Read(ctx context.Context, s *r2.Store, inFlight int) (objects, bytes int64, err error) {
	var n, total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight + 1) // the lister holds one slot
	g.Go(func() error {
		return s.ListPages(gctx, "", "", 0, func(page []edgebase.Object) error {
			for _, o := range page {
				g.Go(func() error {
					return s.GetObject(gctx, o.Key, func(r io.Reader, _ edgebase.ObjectInfo) error {
						c, err := io.Copy(io.Discard, r)
						n.Add(1)
						total.Add(c)
						return err
					})
				})
			}
			return nil
		})
	})
	err = g.Wait()
	return n.Load(), total.Load(), err
}
