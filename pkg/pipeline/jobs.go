package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Jobs is the stored state of every job, laid out under a staging prefix:
//
//	<staging>index/<kind>/<inverted ms>-<job>   one marker per job, newest first
//	<staging><job>/job.json                     the job record (compare-and-swap only)
//	<staging><job>/plan/tasks.ndjson            every task, in assembly/phase order (written once)
//	<staging><job>/plan/...                     planning inputs (storage key ranges, reports)
//	<staging><job>/parts/<task>/<delivery>/...  what one delivery of a task wrote
//	<staging><job>/done/<phase>/<task>.json     a task's outcome: created once, names its delivery's parts
//	<staging><job>/failed/<task>.json           a task that failed for good: created once
//	<staging><job>/retry/<task>.json            the last failed attempt of a task being retried
//	<staging><job>/locks/<task>                 leases of run-once tasks (wipes)
//
// and finished archives under the archive prefix. Completion is always
// decided from these objects, never from in-memory counters, and a check
// counts a phase's finished tasks by listing its done/ prefix, never by
// reading every outcome.
type Jobs struct {
	Store BlobStore
	// Staging and Archives are key prefixes ("" or ending in '/').
	Staging  string
	Archives string
	Now      func() time.Time
}

// NewJobs checks the prefixes and fills defaults.
func NewJobs(store BlobStore, staging, archives string, now func() time.Time) (*Jobs, error) {
	for _, p := range []string{staging, archives} {
		if p != "" && !strings.HasSuffix(p, "/") {
			return nil, fmt.Errorf("pipeline: prefix %q must be empty or end in '/'", p)
		}
	}
	if staging == archives {
		return nil, errors.New("pipeline: staging and archive prefixes must differ")
	}
	if now == nil {
		now = time.Now
	}
	return &Jobs{Store: store, Staging: staging, Archives: archives, Now: now}, nil
}

func (j *Jobs) key(job string, parts ...string) string {
	return j.Staging + path.Join(append([]string{job}, parts...)...)
}

// StagingKey is the key of any object of a job's staging area.
func (j *Jobs) StagingKey(job string, parts ...string) string { return j.key(job, parts...) }

// JobKey is the key of a job record.
func (j *Jobs) JobKey(job string) string { return j.key(job, "job.json") }

// PlanKey is the key of a planning file.
func (j *Jobs) PlanKey(job, name string) string { return j.key(job, "plan", name) }

// OutputPrefix is where one delivery of a task writes its outputs.
func (j *Jobs) OutputPrefix(job, task, delivery string) string {
	return j.key(job, "parts", task, delivery) + "/"
}

// ArchiveKey is where a finished archive named name is stored.
func (j *Jobs) ArchiveKey(name string) string { return j.Archives + name }

func (j *Jobs) donePrefix(job string, phase int) string {
	return j.key(job, "done", fmt.Sprintf("%03d", phase)) + "/"
}
func (j *Jobs) doneKey(job string, phase int, task string) string {
	return j.donePrefix(job, phase) + task + ".json"
}
func (j *Jobs) failedKey(job, task string) string { return j.key(job, "failed", task+".json") }
func (j *Jobs) retryKey(job, task string) string  { return j.key(job, "retry", task+".json") }
func (j *Jobs) leaseKey(job, task string) string  { return j.key(job, "locks", task) }

// CreateJob stores a new job record and its index marker; it fails with
// blob.ErrExist when the id is taken (a redelivered start request). A
// record whose marker could not be written gets it from the retry
// (writeIndex of the existing record: the key derives from its creation
// time, so it is the same marker).
func (j *Jobs) CreateJob(ctx context.Context, job *events.Job) error {
	job.UpdatedAt = j.Now().UTC()
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	if err := j.Store.Create(ctx, j.JobKey(job.ID), bytes.NewReader(b)); err != nil {
		return err
	}
	return j.writeIndex(ctx, job)
}

// ReadJob loads a job record.
func (j *Jobs) ReadJob(ctx context.Context, id string) (*events.Job, error) {
	job, _, err := j.readJob(ctx, id)
	return job, err
}

func (j *Jobs) readJob(ctx context.Context, id string) (*events.Job, blob.Version, error) {
	rc, v, err := j.Store.ReadVersion(ctx, j.JobKey(id))
	if err != nil {
		return nil, "", fmt.Errorf("pipeline: job %s: %w", id, err)
	}
	defer rc.Close()
	var job events.Job
	if err := json.NewDecoder(rc).Decode(&job); err != nil {
		return nil, "", fmt.Errorf("pipeline: job %s: decoding its record: %w", id, err)
	}
	return &job, v, nil
}

// ErrNoChange, returned by an Update function, leaves the record as it is.
var ErrNoChange = errors.New("pipeline: no change")

// maxUpdateTries bounds the compare-and-swap retries of one Update: a job
// record has a handful of writers, so losing this often means something
// is wrong.
const maxUpdateTries = 40

// Update changes a job record by compare-and-swap: it reads the record,
// lets change modify it, and replaces the stored record only if nobody
// replaced it in between; otherwise it reads again and retries. change
// may therefore run more than once and must decide from the job it is
// given; returning ErrNoChange leaves the record untouched (Update then
// returns the record as read), any other error aborts. Update returns the
// record as stored.
func (j *Jobs) Update(ctx context.Context, id string, change func(*events.Job) error) (*events.Job, error) {
	for try := 0; ; try++ {
		job, v, err := j.readJob(ctx, id)
		if err != nil {
			return nil, err
		}
		ended := job.State.Terminal()
		if err := change(job); errors.Is(err, ErrNoChange) {
			return job, nil
		} else if err != nil {
			return job, err
		}
		job.UpdatedAt = j.Now().UTC()
		job.Revision++
		b, err := json.Marshal(job)
		if err != nil {
			return nil, err
		}
		err = j.Store.Replace(ctx, j.JobKey(id), bytes.NewReader(b), v)
		if err == nil {
			if !ended && job.State.Terminal() {
				j.jobEnded(ctx, job)
			}
			return job, nil
		}
		if !errors.Is(err, blob.ErrConflict) || try >= maxUpdateTries {
			return nil, fmt.Errorf("pipeline: updating job %s: %w", id, err)
		}
		// Another writer came first; back off a little so a crowd of
		// writers spreads out.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(rand.IntN(5*(try+1))) * time.Millisecond):
		}
	}
}

// WritePlan stores the task list of a job, produced by gen one task at a
// time (the list is streamed, never held in memory), and returns how many
// tasks it holds. A plan is written once: a second call fails with
// blob.ErrExist.
func (j *Jobs) WritePlan(ctx context.Context, job string, gen func(emit func(events.Task) error) error) (int, error) {
	n := 0
	err := j.putStream(ctx, j.PlanKey(job, "tasks.ndjson"), true, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		return gen(func(t events.Task) error {
			t.Job = job
			n++
			return enc.Encode(t)
		})
	})
	return n, err
}

// DeletePlan removes a plan that was interrupted, so it can be written
// again.
func (j *Jobs) DeletePlan(ctx context.Context, job string) error {
	return j.Store.Delete(ctx, j.PlanKey(job, "tasks.ndjson"))
}

// EachTask streams the plan of a job in order.
func (j *Jobs) EachTask(ctx context.Context, job string, fn func(events.Task) error) error {
	rc, err := j.Store.Get(ctx, j.PlanKey(job, "tasks.ndjson"))
	if err != nil {
		return fmt.Errorf("pipeline: plan of job %s: %w", job, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReader(rc))
	for {
		var t events.Task
		if err := dec.Decode(&t); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("pipeline: plan of job %s: %w", job, err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
}

// Done returns the recorded outcome of a finished task; ok is false while
// it has none.
func (j *Jobs) Done(ctx context.Context, t events.Task) (st events.TaskStatus, ok bool, err error) {
	return j.readStatus(ctx, j.doneKey(t.Job, t.Phase, t.ID))
}

// Failed returns the recorded failure of a task that failed for good; ok
// is false when it has none.
func (j *Jobs) Failed(ctx context.Context, t events.Task) (st events.TaskStatus, ok bool, err error) {
	return j.readStatus(ctx, j.failedKey(t.Job, t.ID))
}

// Retrying returns the last failed attempt of a task; ok is false when
// none was recorded.
func (j *Jobs) Retrying(ctx context.Context, t events.Task) (st events.TaskStatus, ok bool, err error) {
	return j.readStatus(ctx, j.retryKey(t.Job, t.ID))
}

func (j *Jobs) readStatus(ctx context.Context, key string) (events.TaskStatus, bool, error) {
	var st events.TaskStatus
	err := j.GetJSON(ctx, key, &st)
	if errors.Is(err, blob.ErrNotExist) {
		return st, false, nil
	}
	return st, err == nil, err
}

// recordDone stores a task's outcome once; a second outcome of the same
// task fails with blob.ErrExist (another delivery finished it first).
func (j *Jobs) recordDone(ctx context.Context, t events.Task, st events.TaskStatus) error {
	return j.createJSON(ctx, j.doneKey(t.Job, t.Phase, t.ID), st)
}

func (j *Jobs) recordFailed(ctx context.Context, t events.Task, st events.TaskStatus) error {
	err := j.createJSON(ctx, j.failedKey(t.Job, t.ID), st)
	if errors.Is(err, blob.ErrExist) {
		return nil // failed already; the first failure stands
	}
	return err
}

func (j *Jobs) recordRetry(ctx context.Context, t events.Task, st events.TaskStatus) error {
	return j.PutJSON(ctx, j.retryKey(t.Job, t.ID), st)
}

// CountDone counts the finished tasks of one phase by listing their
// outcomes (one LIST request per thousand tasks on S3, none read).
func (j *Jobs) CountDone(ctx context.Context, job string, phase int) (int, error) {
	n := 0
	err := j.Store.List(ctx, j.donePrefix(job, phase), func(blob.Info) error { n++; return nil })
	return n, err
}

// Failures counts the tasks of a job that failed for good and reads the
// first max of them.
func (j *Jobs) Failures(ctx context.Context, job string, max int) (int, []events.TaskStatus, error) {
	return j.listStatuses(ctx, j.key(job, "failed")+"/", max)
}

// Retries counts the tasks of a job whose last attempt failed and reads
// the first max of them (some may have finished since).
func (j *Jobs) Retries(ctx context.Context, job string, max int) (int, []events.TaskStatus, error) {
	return j.listStatuses(ctx, j.key(job, "retry")+"/", max)
}

func (j *Jobs) listStatuses(ctx context.Context, prefix string, max int) (int, []events.TaskStatus, error) {
	n := 0
	var first []events.TaskStatus
	err := j.Store.List(ctx, prefix, func(info blob.Info) error {
		n++
		if len(first) >= max {
			return nil
		}
		st, ok, err := j.readStatus(ctx, info.Key)
		if ok {
			first = append(first, st)
		}
		return err
	})
	return n, first, err
}

// EachDone calls fn for the outcome of every finished task of a job, of
// all phases, reading up to 16 at a time; fn is called from one goroutine
// at a time, in no particular order.
func (j *Jobs) EachDone(ctx context.Context, job string, fn func(events.TaskStatus) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	out := make(chan events.TaskStatus, 16)
	var consumeErr error
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for st := range out {
			if consumeErr == nil {
				consumeErr = fn(st)
			}
		}
	}()
	err := j.Store.List(gctx, j.key(job, "done")+"/", func(info blob.Info) error {
		g.Go(func() error {
			st, ok, err := j.readStatus(gctx, info.Key)
			if err != nil || !ok {
				return err
			}
			select {
			case out <- st:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
		return nil
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	close(out)
	<-consumed
	if err != nil {
		return err
	}
	return consumeErr
}

// ClearFailures forgets the failed and retried outcomes of a job (resume:
// those tasks get another chance; finished ones are kept).
func (j *Jobs) ClearFailures(ctx context.Context, job string) error {
	for _, dir := range []string{"failed", "retry"} {
		if err := j.deletePrefix(ctx, j.key(job, dir)+"/", ""); err != nil {
			return err
		}
	}
	return nil
}

// DeleteStaging removes a job's staging objects except its record.
func (j *Jobs) DeleteStaging(ctx context.Context, job string) error {
	return j.deletePrefix(ctx, j.key(job)+"/", j.JobKey(job))
}

// deletePrefix deletes every key under prefix but keep, in batches
// between listing pages (deleting while listing is not safe on every
// store).
func (j *Jobs) deletePrefix(ctx context.Context, prefix, keep string) error {
	var keys []string
	flush := func() error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for _, k := range keys {
			g.Go(func() error { return j.Store.Delete(gctx, k) })
		}
		keys = keys[:0]
		return g.Wait()
	}
	err := j.Store.List(ctx, prefix, func(info blob.Info) error {
		if info.Key == keep {
			return nil
		}
		keys = append(keys, info.Key)
		if len(keys) >= 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// The job index lets callers list jobs newest first, a page at a time,
// without reading every staging object: one empty marker per job,
//
//	<staging>index/<kind>/<13-digit 9999999999999 - createdAt ms>-<job id>
//
// whose keys sort newest first.
const maxIndexMillis = 9999999999999

func (j *Jobs) indexPrefix(kind events.JobKind) string {
	return j.Staging + "index/" + string(kind) + "/"
}

func (j *Jobs) writeIndex(ctx context.Context, job *events.Job) error {
	key := fmt.Sprintf("%s%013d-%s", j.indexPrefix(job.Kind), maxIndexMillis-job.CreatedAt.UnixMilli(), job.ID)
	return j.Store.Put(ctx, key, strings.NewReader(job.ID))
}

var errStopListing = errors.New("stop listing")

// ListIndex calls fn with the ids of jobs of kind, newest first, starting
// after the index entry named after ("" = from the newest); fn returns
// false to stop. Entries are opaque cursors.
func (j *Jobs) ListIndex(ctx context.Context, kind events.JobKind, after string, fn func(entry, id string) bool) error {
	prefix := j.indexPrefix(kind)
	err := j.Store.List(ctx, prefix, func(info blob.Info) error {
		entry := strings.TrimPrefix(info.Key, prefix)
		if after != "" && entry <= after {
			return nil
		}
		_, id, ok := strings.Cut(entry, "-")
		if !ok || id == "" {
			return nil
		}
		if !fn(entry, id) {
			return errStopListing
		}
		return nil
	})
	if errors.Is(err, errStopListing) {
		return nil
	}
	return err
}

// ListJobs calls fn for the record of every job of the given kinds ("" for
// all), newest first. A job whose record expired is skipped.
func (j *Jobs) ListJobs(ctx context.Context, fn func(*events.Job) error, kinds ...events.JobKind) error {
	if len(kinds) == 0 {
		kinds = []events.JobKind{events.KindBackup, events.KindRestore}
	}
	for _, kind := range kinds {
		var ferr error
		err := j.ListIndex(ctx, kind, "", func(_, id string) bool {
			job, err := j.ReadJob(ctx, id)
			if errors.Is(err, blob.ErrNotExist) {
				return true
			}
			if err == nil {
				err = fn(job)
			}
			ferr = err
			return err == nil
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (j *Jobs) createJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.Store.Create(ctx, key, bytes.NewReader(b))
}

// PutJSON stores v as JSON under key (small planning files and outcomes).
func (j *Jobs) PutJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.Store.Put(ctx, key, bytes.NewReader(b))
}

// GetJSON loads a JSON object stored with PutJSON.
func (j *Jobs) GetJSON(ctx context.Context, key string, v any) error {
	rc, err := j.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(v); err != nil {
		return fmt.Errorf("decoding %s: %w", key, err)
	}
	return nil
}

// PutStream stores what produce writes under key, atomically (Create when
// exclusive); produce's error aborts the write and is returned.
func (j *Jobs) PutStream(ctx context.Context, key string, produce func(w io.Writer) error) error {
	return j.putStream(ctx, key, false, produce)
}

func (j *Jobs) putStream(ctx context.Context, key string, exclusive bool, produce func(w io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		err := produce(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	var perr error
	if exclusive {
		perr = j.Store.Create(ctx, key, pr)
	} else {
		perr = j.Store.Put(ctx, key, pr)
	}
	pr.CloseWithError(perr) // stops produce if the store gave up
	if err := <-done; err != nil {
		return err
	}
	return perr
}
