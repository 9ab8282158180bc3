package backup

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/repository"
)

// The storage port of a backup has two adapters. The admin API
// (*edgebase.Client, the default) lists the whole bucket in one
// dump-storage reply, so the planner cuts that stream into ranges and
// stores each range's objects. R2 direct (pkg/r2) lists a page at a time,
// so the planner cuts pages into key ranges and stores only their bounds;
// the worker re-lists its range (StartAfter + end key) and fetches the
// objects with the types R2 stored. Neither side ever holds more than one
// range of keys.

// ObjectSource reads one object with what its reply says about it.
type ObjectSource interface {
	GetObject(ctx context.Context, key string, fn func(io.Reader, edgebase.ObjectInfo) error) error
}

// DirectStorage is the R2-direct side of the port: the bucket listed a
// page at a time, keys after startAfter up to and including end ("" = no
// bound), and read directly.
type DirectStorage interface {
	ObjectSource
	ListPages(ctx context.Context, startAfter, end string, pageSize int, fn func([]edgebase.Object) error) error
}

var _ ObjectSource = (*edgebase.Client)(nil)

// KeyRange is the planning file of one R2-direct storage range: the
// objects with keys in (StartAfter, End], as listed when planning.
type KeyRange struct {
	StartAfter string `json:"startAfter"`
	End        string `json:"end"`
	Objects    int    `json:"objects"`
	Bytes      int64  `json:"bytes"`
}

// KeyRangeKey is the planning file with the bounds of storage range r.
func KeyRangeKey(j *pipeline.Jobs, job string, r int) string {
	return j.PlanKey(job, fmt.Sprintf("storage-%06d.range.json", r))
}

func isKeyRange(input string) bool { return strings.HasSuffix(input, ".range.json") }

// planDirect streams ListObjectsV2 pages into key ranges: one page in
// memory at a time, and only the bounds of each range are stored.
func (p *Planner) planDirect(ctx context.Context, job *events.Job, maxKeys int, maxBytes int64, rp *repoPlan, next func(events.Task) error) (internal int64, err error) {
	var (
		cur   KeyRange
		last  string
		r     int
		reuse []repository.StorageEntry // the range's unchanged objects (repository mode)
	)
	flush := func() error {
		if cur.Objects == 0 {
			return nil
		}
		cur.End = last
		if len(reuse) > 0 {
			if err := writeNDJSON(ctx, p.Jobs, ReuseKey(p.Jobs, job.ID, r), reuse); err != nil {
				return err
			}
			reuse = reuse[:0]
		}
		key := KeyRangeKey(p.Jobs, job.ID, r)
		if err := p.Jobs.PutJSON(ctx, key, cur); err != nil {
			return err
		}
		err := next(events.Task{Kind: events.TaskStorage, Range: r, First: true, Input: key,
			Unit: fmt.Sprintf("storage range %d (%d objects, after %q … %q)", r, cur.Objects, cur.StartAfter, cur.End)})
		r++
		cur = KeyRange{StartAfter: last}
		return err
	}
	err = p.Direct.ListPages(ctx, "", "", min(maxKeys, 1000), func(page []edgebase.Object) error {
		for _, o := range page {
			if edgebase.IsInternalKey(o.Key) {
				internal++
				continue
			}
			cur.Objects++
			cur.Bytes += o.Size
			last = o.Key
			if e := rp.lookup(o); e != nil {
				reuse = append(reuse, *e)
			}
			if cur.Objects >= maxKeys || cur.Bytes >= maxBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return internal, fmt.Errorf("listing storage through R2 direct: %w", err)
	}
	return internal, flush()
}

// relist lists the objects of one key range again, leaving out the
// server's internal keys.
func relist(ctx context.Context, j *pipeline.Jobs, d DirectStorage, input string) ([]edgebase.Object, error) {
	if d == nil {
		return nil, pipeline.Permanent(fmt.Errorf("%s is an R2-direct key range, but this worker has no R2 settings", input))
	}
	var kr KeyRange
	if err := j.GetJSON(ctx, input, &kr); err != nil {
		return nil, err
	}
	// Pages of the range's own size: a re-list reads no keys past End
	// unless objects were added inside the range since planning.
	var out []edgebase.Object
	err := d.ListPages(ctx, kr.StartAfter, kr.End, max(kr.Objects, 1), func(page []edgebase.Object) error {
		for _, o := range page {
			if !edgebase.IsInternalKey(o.Key) {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}
