package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Jobs is the stored state of every job, laid out under a staging prefix:
//
//	<staging><job>/job.json            the job record (scheduler, assembler)
//	<staging><job>/plan/tasks.ndjson   every task, in assembly/phase order
//	<staging><job>/plan/...            planning inputs (storage key ranges)
//	<staging><job>/parts/<task>[...]   task outputs
//	<staging><job>/status/<task>.json  task outcomes (workers)
//	<staging><job>/locks/<task>        leases of tasks that must run once
//
// and finished archives under the archive prefix. Completion is always
// decided from these objects, never from in-memory counters.
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
			return nil, fmt.Errorf("backup: prefix %q must be empty or end in '/'", p)
		}
	}
	if staging == archives {
		return nil, errors.New("backup: staging and archive prefixes must differ")
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

// PartKey is the key of a task output (suffix "" for the main part).
func (j *Jobs) PartKey(job, task, suffix string) string {
	return j.key(job, "parts", task+suffix)
}

// PlanKey is the key of a planning file.
func (j *Jobs) PlanKey(job, name string) string { return j.key(job, "plan", name) }

func (j *Jobs) statusKey(job, task string) string { return j.key(job, "status", task+".json") }

// ArchiveKey is where a finished archive named name is stored.
func (j *Jobs) ArchiveKey(name string) string { return j.Archives + name }

// CreateJob stores a new job record; it fails with blob.ErrExist when the
// id is taken (a redelivered start request).
func (j *Jobs) CreateJob(ctx context.Context, job *events.Job) error {
	job.UpdatedAt = j.Now().UTC()
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return j.Store.Create(ctx, j.JobKey(job.ID), bytes.NewReader(b))
}

// ReadJob loads a job record.
func (j *Jobs) ReadJob(ctx context.Context, id string) (*events.Job, error) {
	var job events.Job
	if err := j.readJSON(ctx, j.JobKey(id), &job); err != nil {
		return nil, fmt.Errorf("backup: job %s: %w", id, err)
	}
	return &job, nil
}

// WriteJob replaces a job record.
func (j *Jobs) WriteJob(ctx context.Context, job *events.Job) error {
	job.UpdatedAt = j.Now().UTC()
	return j.writeJSON(ctx, j.JobKey(job.ID), job)
}

// ListJobs calls fn for every job record under the staging prefix.
func (j *Jobs) ListJobs(ctx context.Context, fn func(*events.Job) error) error {
	return j.Store.List(ctx, j.Staging, func(info blob.Info) error {
		rest := strings.TrimPrefix(info.Key, j.Staging)
		id, file, ok := strings.Cut(rest, "/")
		if !ok || file != "job.json" {
			return nil
		}
		job, err := j.ReadJob(ctx, id)
		if err != nil {
			if errors.Is(err, blob.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(job)
	})
}

// WriteStatus records a task outcome.
func (j *Jobs) WriteStatus(ctx context.Context, job string, st events.TaskStatus) error {
	return j.writeJSON(ctx, j.statusKey(job, st.Task), st)
}

// ReadStatus loads a task outcome; a task without one wraps blob.ErrNotExist.
func (j *Jobs) ReadStatus(ctx context.Context, job, task string) (events.TaskStatus, error) {
	var st events.TaskStatus
	err := j.readJSON(ctx, j.statusKey(job, task), &st)
	return st, err
}

// EachStatus calls fn for every recorded task outcome of a job.
func (j *Jobs) EachStatus(ctx context.Context, job string, fn func(events.TaskStatus) error) error {
	return j.Store.List(ctx, j.key(job, "status")+"/", func(info blob.Info) error {
		var st events.TaskStatus
		if err := j.readJSON(ctx, info.Key, &st); err != nil {
			if errors.Is(err, blob.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(st)
	})
}

// WritePlan stores the task list of a job, produced by gen one task at a
// time (the list is streamed, never held in memory), and returns how many
// tasks it holds. A plan is written once: a second call fails with
// blob.ErrExist.
func (j *Jobs) WritePlan(ctx context.Context, job string, gen func(emit func(events.Task) error) error) (int, error) {
	pr, pw := io.Pipe()
	n := 0
	go func() {
		bw := bufio.NewWriter(pw)
		enc := json.NewEncoder(bw)
		err := gen(func(t events.Task) error {
			t.Job = job
			n++
			return enc.Encode(t)
		})
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	err := j.Store.Create(ctx, j.PlanKey(job, "tasks.ndjson"), pr)
	pr.CloseWithError(err) // unblocks gen if the store stopped reading
	return n, err
}

// EachTask streams the plan of a job in order.
func (j *Jobs) EachTask(ctx context.Context, job string, fn func(events.Task) error) error {
	rc, err := j.Store.Get(ctx, j.PlanKey(job, "tasks.ndjson"))
	if err != nil {
		return fmt.Errorf("backup: plan of job %s: %w", job, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(bufio.NewReader(rc))
	for {
		var t events.Task
		if err := dec.Decode(&t); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("backup: plan of job %s: %w", job, err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
}

// DeleteStaging removes a job's staging objects except its record.
func (j *Jobs) DeleteStaging(ctx context.Context, job string) error {
	keep := j.JobKey(job)
	var keys []string
	flush := func() error {
		for _, k := range keys {
			if err := j.Store.Delete(ctx, k); err != nil {
				return err
			}
		}
		keys = keys[:0]
		return nil
	}
	err := j.Store.List(ctx, j.key(job)+"/", func(info blob.Info) error {
		if info.Key == keep {
			return nil
		}
		// Deleting while listing is not safe on every store; delete in
		// batches between pages of a bounded size instead.
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

func (j *Jobs) readJSON(ctx context.Context, key string, v any) error {
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

func (j *Jobs) writeJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.Store.Put(ctx, key, bytes.NewReader(b))
}

// PutJSON stores v as JSON under key (for small planning files and parts).
func (j *Jobs) PutJSON(ctx context.Context, key string, v any) error { return j.writeJSON(ctx, key, v) }

// GetJSON loads a JSON object stored with PutJSON.
func (j *Jobs) GetJSON(ctx context.Context, key string, v any) error { return j.readJSON(ctx, key, v) }
