package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Planner writes the plan of one kind of job (Jobs.WritePlan) and sets
// job.Tasks and the phase to start with.
type Planner interface {
	Plan(ctx context.Context, job *events.Job) error
}

// Scheduler starts jobs: it creates the job record, has the kind's
// Planner write the plan, enqueues the first phase's tasks and, in the
// serverless runtime, the first delayed check.
type Scheduler struct {
	Jobs       *Jobs
	Planners   map[events.JobKind]Planner
	Tasks      Queue
	Controller *Controller // its Control queue gets the first check; may be nil
	Target     string      // EdgeBase base URL, recorded in the job
	Source     string      // archive "source" (see SourceFor)
	NewID      func(kind events.JobKind, now time.Time) string
	Log        *slog.Logger
}

// SourceFor derives the archive's "source" the way the official CLI does.
func SourceFor(baseURL string, edge bool) string {
	switch {
	case edge || strings.Contains(baseURL, "workers.dev"):
		return "cloudflare-edge"
	case strings.Contains(baseURL, "localhost"):
		return "local"
	}
	return "docker"
}

// NewJobID is the default id: kind, UTC start time, random suffix.
func NewJobID(kind events.JobKind, now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", kind, now.UTC().Format("20060102T150405Z"), hex.EncodeToString(b[:]))
}

// Start creates, plans and launches a job. A repeated request with the
// same JobID (a redelivered trigger) returns the existing job instead of
// starting a second one.
func (s *Scheduler) Start(ctx context.Context, req events.StartRequest) (*events.Job, error) {
	job, err := s.Prepare(ctx, req)
	if err != nil || job.State != events.StatePlanned {
		return job, err
	}
	return job, s.Launch(ctx, job)
}

// Prepare creates a job record and writes its plan without queuing
// anything, so a caller can show the plan and ask before Launch. A job
// that was already launched is returned as it is.
func (s *Scheduler) Prepare(ctx context.Context, req events.StartRequest) (*events.Job, error) {
	now := s.Jobs.Now().UTC()
	id := req.JobID
	if id == "" {
		newID := s.NewID
		if newID == nil {
			newID = NewJobID
		}
		id = newID(req.Kind, now)
	}
	if err := blob.ValidateKey(id); err != nil || strings.Contains(id, "/") {
		return nil, fmt.Errorf("backup: invalid job id %q", id)
	}
	planner, ok := s.Planners[req.Kind]
	if !ok {
		return nil, fmt.Errorf("backup: unknown job kind %q", req.Kind)
	}
	trigger := req.Trigger
	if trigger == "" {
		trigger = events.TriggerCLI
	}
	job := &events.Job{
		ID: id, Kind: req.Kind, State: events.StatePlanned, Trigger: trigger,
		Target: s.Target, Source: s.Source, Options: req.Options,
		CreatedAt: now, Started: now.Truncate(time.Millisecond),
	}
	if err := s.Jobs.CreateJob(ctx, job); err != nil {
		if !errors.Is(err, blob.ErrExist) {
			return nil, err
		}
		existing, rerr := s.Jobs.ReadJob(ctx, id)
		if rerr != nil {
			return nil, rerr
		}
		if existing.State != events.StatePlanned {
			return existing, nil
		}
		// Planning was interrupted: plan again from scratch.
		job = existing
		if err := s.Jobs.Store.Delete(ctx, s.Jobs.PlanKey(id, "tasks.ndjson")); err != nil {
			return nil, err
		}
	}
	if err := planner.Plan(ctx, job); err != nil {
		if errors.Is(err, blob.ErrExist) {
			// A concurrent duplicate of this request is planning the job.
			return nil, fmt.Errorf("backup: job %s is being planned by another invocation: %w", id, err)
		}
		job.State = events.StateFailed
		job.Errors = []events.JobError{{Task: "plan", Unit: "plan", Message: err.Error()}}
		if werr := s.Jobs.WriteJob(context.WithoutCancel(ctx), job); werr != nil {
			err = errors.Join(err, werr)
		}
		return job, err
	}
	return job, s.Jobs.WriteJob(ctx, job)
}

// Launch marks a prepared job running and queues its first phase (and, in
// the serverless runtime, the first delayed check).
func (s *Scheduler) Launch(ctx context.Context, job *events.Job) error {
	job.State = events.StateRunning
	if err := s.Jobs.WriteJob(ctx, job); err != nil {
		return err
	}
	if err := s.Jobs.EnqueuePhase(ctx, s.Tasks, job, false); err != nil {
		return err
	}
	if s.Controller != nil && s.Controller.Control != nil {
		return s.Controller.Recheck(ctx, job.ID)
	}
	return nil
}

// Resume restarts an interrupted or failed job: failed tasks get another
// chance, finished parts are kept, and only unfinished tasks of the open
// phase are queued again.
func (s *Scheduler) Resume(ctx context.Context, id string) (*events.Job, error) {
	job, err := s.Jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.State == events.StateDone {
		return job, fmt.Errorf("backup: job %s is already done", id)
	}
	if job.State == events.StatePlanned {
		return nil, fmt.Errorf("backup: job %s was never planned completely; start a new one", id)
	}
	err = s.Jobs.EachStatus(ctx, id, func(st events.TaskStatus) error {
		if st.State == events.TaskDone {
			return nil
		}
		return s.Jobs.Store.Delete(ctx, s.Jobs.statusKey(id, st.Task))
	})
	if err != nil {
		return job, err
	}
	job.State, job.Errors = events.StateRunning, nil
	if err := s.Jobs.WriteJob(ctx, job); err != nil {
		return job, err
	}
	return job, s.Jobs.EnqueuePhase(ctx, s.Tasks, job, true)
}

// EnqueuePhase queues every task of the job's open phase, skipping tasks
// already done when skipDone is set.
func (j *Jobs) EnqueuePhase(ctx context.Context, q Queue, job *events.Job, skipDone bool) error {
	const batch = 10
	var msgs []Message
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		err := q.Send(ctx, msgs...)
		msgs = msgs[:0]
		return err
	}
	err := j.EachTask(ctx, job.ID, func(t events.Task) error {
		if t.Phase != job.Phase {
			return nil
		}
		if skipDone {
			if st, err := j.ReadStatus(ctx, job.ID, t.ID); err == nil && st.State == events.TaskDone {
				return nil
			}
		}
		body, err := events.Envelope{Task: &t}.Encode()
		if err != nil {
			return err
		}
		msgs = append(msgs, Message{Body: body})
		if len(msgs) >= batch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
