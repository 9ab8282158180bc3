package restore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// The storage port of a restore has two adapters: the admin API
// (*edgebase.Client, the default), whose wipe deletes every object in one
// request, and R2 direct (pkg/r2), which puts with the archived content
// type and deletes listed keys, 1,000 a call.
//
// The storage wipe task compares the target's listing (ascending, one
// page or one object at a time) with the archive's objects (the staged
// ranges, in archive order, which is ascending: it comes from R2's
// listing) in one sorted merge, so its memory does not grow with either
// side. Unless the job asks for a full storage restore, an object whose
// key, size and etag equal the archive's entry is kept and recorded in a
// skip file of its range, which the put tasks read: it is not uploaded
// again. Objects the archive lacks are deleted one by one with R2 direct;
// the admin API can only delete everything, so there the skips stand only
// when the target holds no object the archive lacks (then nothing is
// wiped), and otherwise the whole bucket is wiped and every object is
// uploaded. EdgeBase's internal keys are never touched.
//
// A skip file is written under the wipe delivery's output prefix, and the
// put tasks find it through the wipe task's recorded outcome, so only the
// delivery that finished the wipe counts; puts run after the wipe phase
// has closed, so what they read is final. A skip manifest written last
// says the skip files are complete: a delivery that gave up on skipping
// (an extra object through the admin API) writes none.

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

// storagePlan is what the planner tells the storage tasks
// (plan/storage.json).
type storagePlan struct {
	// WipeTask is the id of the storage wipe task ("" when the restore
	// has none: --only never wipes, and never skips).
	WipeTask string `json:"wipeTask,omitempty"`
	// Sorted says the archive's objects are in strictly ascending key
	// order, which the sorted merge needs.
	Sorted bool `json:"sorted"`
	// RangeKeys is how many objects one staged range holds.
	RangeKeys int `json:"rangeKeys"`
}

func storagePlanKey(j *pipeline.Jobs, job string) string { return j.PlanKey(job, "storage.json") }

// readStoragePlan loads the storage plan; a plan written before there was
// one reads as unsorted, which means a whole wipe and every upload.
func (t *Tasks) readStoragePlan(ctx context.Context, job string) (storagePlan, error) {
	var sp storagePlan
	err := t.Jobs.GetJSON(ctx, storagePlanKey(t.Jobs, job), &sp)
	if errors.Is(err, blob.ErrNotExist) {
		return storagePlan{}, nil
	}
	return sp, err
}

// skipManifest is written last by a wipe delivery whose skip files are
// complete and valid.
type skipManifest struct {
	Skipped int64 `json:"skipped"`
}

func skipManifestKey(output string) string    { return output + "skip.json" }
func skipFileKey(output string, r int) string { return output + fmt.Sprintf("skip-%06d.ndjson", r) }

// errUnordered stops a merge whose input is not in ascending key order.
var errUnordered = errors.New("keys not in ascending order")

// errExtra stops an admin-API merge at the first object the archive lacks.
var errExtra = errors.New("the target holds an object the archive lacks")

func (t *Tasks) wipeStorage(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	sp, err := t.readStoragePlan(ctx, u.Task.Job)
	if err != nil {
		return pipeline.Result{}, err
	}
	compare := !u.Job.Options.FullStorage
	var res pipeline.Result
	if !sp.Sorted && (compare || t.Direct != nil) {
		res.Warn("the archive's storage objects are not in ascending key order, so the target's objects cannot be compared with them: " +
			"every object is deleted and uploaded again")
	}
	if t.Direct != nil {
		err = t.wipeDirect(ctx, u, sp, compare, &res)
	} else {
		err = t.wipeAdmin(ctx, u, sp, compare, &res)
	}
	return res, classify(err)
}

// wipeAdmin wipes through the admin API. Comparing, the wipe is left out
// when every object on the target is one the archive holds.
func (t *Tasks) wipeAdmin(ctx context.Context, u pipeline.Unit, sp storagePlan, compare bool, res *pipeline.Result) error {
	if compare && sp.Sorted {
		m := t.newMerge(u, true)
		_, err := t.Client.ListStorage(ctx, func(o edgebase.Object) error {
			extra, err := m.visit(ctx, o)
			if err == nil && extra {
				err = errExtra
			}
			return err
		})
		if err == nil {
			err = m.finish(ctx, res)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errExtra):
		case errors.Is(err, errUnordered):
			res.Skipped = 0
			res.Warn("the storage keys are not in ascending key order, so the target's objects cannot be compared with the archive's: "+
				"every object is deleted and uploaded again (%v)", err)
		default:
			return err
		}
	}
	n, err := t.Client.WipeStorage(ctx)
	res.Deleted = n
	return err
}

// wipeDirect deletes, through R2 direct, the objects the archive does not
// hold (comparing, it also records the unchanged ones). When either side
// is out of order it deletes every object but EdgeBase's internal keys.
func (t *Tasks) wipeDirect(ctx context.Context, u pipeline.Unit, sp storagePlan, compare bool, res *pipeline.Result) error {
	if sp.Sorted {
		m := t.newMerge(u, compare)
		del := t.deleter(res)
		err := t.Direct.ListPages(ctx, "", "", 0, func(page []edgebase.Object) error {
			for _, o := range page {
				extra, err := m.visit(ctx, o)
				if err != nil {
					return err
				}
				if extra {
					if err := del.add(ctx, o.Key); err != nil {
						return err
					}
				}
			}
			return del.flush(ctx)
		})
		if err == nil {
			err = m.finish(ctx, res)
		}
		if !errors.Is(err, errUnordered) {
			return err
		}
		res.Skipped = 0
		res.Warn("the storage keys are not in ascending key order, so the target's objects cannot be compared with the archive's: "+
			"every object is deleted and uploaded again (%v)", err)
	}
	del := t.deleter(res)
	err := t.Direct.ListPages(ctx, "", "", 0, func(page []edgebase.Object) error {
		for _, o := range page {
			if edgebase.IsInternalKey(o.Key) {
				continue
			}
			if err := del.add(ctx, o.Key); err != nil {
				return err
			}
		}
		return del.flush(ctx)
	})
	return err
}

// batchDeleter deletes keys through R2 direct, at most a page at a time.
type batchDeleter struct {
	t    *Tasks
	res  *pipeline.Result
	keys []string
}

func (t *Tasks) deleter(res *pipeline.Result) *batchDeleter { return &batchDeleter{t: t, res: res} }

func (d *batchDeleter) add(ctx context.Context, key string) error {
	d.keys = append(d.keys, key)
	if len(d.keys) >= 1000 {
		return d.flush(ctx)
	}
	return nil
}

func (d *batchDeleter) flush(ctx context.Context) error {
	if len(d.keys) == 0 {
		return nil
	}
	if err := d.t.Direct.DeleteObjects(ctx, d.keys); err != nil {
		return err
	}
	d.res.Deleted += int64(len(d.keys))
	d.keys = d.keys[:0]
	return nil
}

// merge walks the archive's objects alongside the target's listing, both
// ascending. It holds one staged range and one range's skipped keys.
type merge struct {
	t       *Tasks
	job     string
	output  string
	compare bool

	// the archive's side
	r    int // range loaded in objs
	objs []archive.Object
	i    int
	end  bool
	last string // the archive's previous key
	// the target's side
	prev    string
	started bool
	// skipped keys of range skipR, not yet written
	skipR   int
	skip    []string
	skipped int64
}

func (t *Tasks) newMerge(u pipeline.Unit, compare bool) *merge {
	return &merge{t: t, job: u.Task.Job, output: u.Output, compare: compare, r: -1, skipR: -1}
}

// head returns the archive's next object; ok is false past the last one.
func (m *merge) head(ctx context.Context) (archive.Object, bool, error) {
	for !m.end && (m.r < 0 || m.i >= len(m.objs)) {
		objs, err := readObjects(ctx, m.t.Jobs, rangeKey(m.t.Jobs, m.job, m.r+1))
		if errors.Is(err, blob.ErrNotExist) {
			m.end = true
			break
		}
		if err != nil {
			return archive.Object{}, false, fmt.Errorf("reading the archive's keys: %w", err)
		}
		m.r, m.objs, m.i = m.r+1, objs, 0
	}
	if m.end {
		return archive.Object{}, false, nil
	}
	o := m.objs[m.i]
	if m.r > 0 || m.i > 0 {
		if o.Key <= m.last {
			return archive.Object{}, false, fmt.Errorf("the archive's staged objects: %q after %q: %w", o.Key, m.last, errUnordered)
		}
	}
	return o, true, nil
}

func (m *merge) advance() {
	m.last = m.objs[m.i].Key
	m.i++
}

// visit takes the target's next object and says whether the archive
// lacks it (an extra object, to be deleted). EdgeBase's internal keys are
// never extra.
func (m *merge) visit(ctx context.Context, o edgebase.Object) (extra bool, err error) {
	if m.started && o.Key <= m.prev {
		return false, fmt.Errorf("the target's listing: %q after %q: %w", o.Key, m.prev, errUnordered)
	}
	m.started, m.prev = true, o.Key
	if edgebase.IsInternalKey(o.Key) {
		return false, nil
	}
	for {
		a, ok, err := m.head(ctx)
		if err != nil {
			return false, err
		}
		if !ok || a.Key > o.Key {
			return true, nil
		}
		m.advance()
		if a.Key == o.Key {
			if m.compare && sameObject(a, o) {
				return false, m.addSkip(ctx, a.Key)
			}
			return false, nil
		}
		// a.Key < o.Key: the target lacks a; its upload creates it.
	}
}

// sameObject says whether the target's object equals the archive's entry:
// same key, size and etag, both etags as the listings give them (quotes
// stripped). An entry without an etag is never unchanged.
func sameObject(a archive.Object, o edgebase.Object) bool {
	ae, oe := strings.Trim(a.ETag, `"`), strings.Trim(o.ETag, `"`)
	return a.Key == o.Key && a.Size == o.Size && ae != "" && ae == oe
}

func (m *merge) addSkip(ctx context.Context, key string) error {
	if m.skipR != m.r {
		if err := m.flushSkips(ctx); err != nil {
			return err
		}
		m.skipR = m.r
	}
	m.skip = append(m.skip, key)
	m.skipped++
	return nil
}

func (m *merge) flushSkips(ctx context.Context) error {
	if len(m.skip) == 0 {
		return nil
	}
	keys := m.skip
	m.skip = m.skip[:0]
	return m.t.Jobs.PutStream(ctx, skipFileKey(m.output, m.skipR), func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		for _, k := range keys {
			if err := enc.Encode(k); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

// finish reads the rest of the archive's objects, whose order the merge
// relies on (errUnordered), then writes the last skip file and, comparing,
// the manifest that makes the skip files count.
func (m *merge) finish(ctx context.Context, res *pipeline.Result) error {
	for {
		_, ok, err := m.head(ctx)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		m.advance()
	}
	if !m.compare {
		return nil
	}
	if err := m.flushSkips(ctx); err != nil {
		return err
	}
	if err := m.t.Jobs.PutJSON(ctx, skipManifestKey(m.output), skipManifest{Skipped: m.skipped}); err != nil {
		return err
	}
	res.Skipped = m.skipped
	return nil
}

// skipSet is the keys of some ranges that the storage wipe found
// unchanged on the target; nil when nothing is skipped.
type skipSet map[string]struct{}

// skips loads the skip files of ranges first..last that the delivery
// which finished the storage wipe wrote. A restore without a wipe, or
// whose wipe did not compare, skips nothing.
func (t *Tasks) skips(ctx context.Context, job string, sp storagePlan, first, last int) (skipSet, error) {
	if sp.WipeTask == "" {
		return nil, nil
	}
	st, ok, err := t.Jobs.Done(ctx, events.Task{Job: job, ID: sp.WipeTask, Phase: PhaseWipeStorage})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("the storage wipe %s has no recorded outcome; uploads wait for it", sp.WipeTask)
	}
	var man skipManifest
	if err := t.Jobs.GetJSON(ctx, skipManifestKey(st.Output), &man); errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	set := skipSet{}
	for r := first; r <= last; r++ {
		if err := t.readSkipFile(ctx, skipFileKey(st.Output, r), set); err != nil {
			return nil, err
		}
	}
	return set, nil
}

func (t *Tasks) readSkipFile(ctx context.Context, key string, set skipSet) error {
	rc, err := t.Jobs.Store.Get(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReader(rc))
	for {
		var k string
		if err := dec.Decode(&k); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("skip file %s: %w", key, err)
		}
		set[k] = struct{}{}
	}
}
