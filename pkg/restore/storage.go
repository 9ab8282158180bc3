package restore

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// The storage port of a restore has two adapters: the admin API
// (*edgebase.Client, the default), whose wipe deletes every object in one
// request, and R2 direct (pkg/r2), which puts with the archived content
// type and wipes by listing the bucket a page at a time and deleting,
// 1,000 keys a call, exactly the keys the archive does not hold. Keys the
// archive holds are overwritten by the uploads that follow; EdgeBase's
// internal keys are never touched.

// ObjectTarget writes one object with its content type.
type ObjectTarget interface {
	PutObject(ctx context.Context, key, contentType string, size int64, body edgebase.BodyFunc) error
}

// DirectStorage is the R2-direct side of the port.
type DirectStorage interface {
	ObjectTarget
	ListPages(ctx context.Context, startAfter, end string, pageSize int, fn func([]edgebase.Object) error) error
	DeleteObjects(ctx context.Context, keys []string) error
}

var _ ObjectTarget = (*edgebase.Client)(nil)

func (t *Tasks) target() ObjectTarget {
	if t.Direct != nil {
		return t.Direct
	}
	return t.Client
}

// wipeDirect deletes the bucket's objects that the archive does not hold.
// The archive's keys come from the staged ranges (every storage.objects
// entry), so memory grows with the archive's key count, never with the
// bucket's; the listing is one page at a time.
func (t *Tasks) wipeDirect(ctx context.Context, job string) (int64, error) {
	keep := map[string]struct{}{}
	for r := 0; ; r++ {
		objs, err := readObjects(ctx, t.Jobs, rangeKey(t.Jobs, job, r))
		if errors.Is(err, blob.ErrNotExist) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading the archive's keys: %w", err)
		}
		for _, o := range objs {
			keep[o.Key] = struct{}{}
		}
	}
	var deleted int64
	err := t.Direct.ListPages(ctx, "", "", 0, func(page []edgebase.Object) error {
		var gone []string
		for _, o := range page {
			if _, ok := keep[o.Key]; ok || edgebase.IsInternalKey(o.Key) {
				continue
			}
			gone = append(gone, o.Key)
		}
		if len(gone) == 0 {
			return nil
		}
		if err := t.Direct.DeleteObjects(ctx, gone); err != nil {
			return err
		}
		deleted += int64(len(gone))
		return nil
	})
	return deleted, err
}
