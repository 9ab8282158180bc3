package serverless

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/restore"
)

// Assembler is the assembler function: it handles the delayed check
// messages of the control queue. Each check looks at a job's stored
// state once (Controller.Check): it fails the job when a task failed for
// good, opens a restore's next phase, or assembles a backup whose parts
// all exist; an unfinished job gets its next delayed check queued.
type Assembler struct {
	*base
	controller *backup.Controller
	control    backup.Queue
}

// NewAssembler connects the assembler: S3 and both queues (a restore's
// next phase goes to the task queue).
func NewAssembler(ctx context.Context, cfg Config, rt Runtime) (*Assembler, error) {
	b, err := newBase(ctx, cfg, rt)
	if err != nil {
		return nil, err
	}
	tasks, err := b.queue(cfg.TaskQueueURL)
	if err != nil {
		return nil, err
	}
	control, err := b.queue(cfg.ControlQueueURL)
	if err != nil {
		return nil, err
	}
	h := &Assembler{base: b, control: control}
	h.controller = &backup.Controller{
		Jobs: b.jobs,
		Advancers: map[events.JobKind]backup.Advancer{
			events.KindBackup:  &backup.Assembler{Jobs: b.jobs, ComposeAbove: cfg.ComposeAbove, Log: b.log},
			events.KindRestore: &restore.Coordinator{Jobs: b.jobs, Tasks: tasks, Log: b.log},
		},
		Control:      control,
		RecheckDelay: cfg.RecheckDelay,
		Log:          b.log,
	}
	return h, nil
}

// Handle checks the job of every record (the stack sends batches of one).
func (h *Assembler) Handle(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
	log, _ := h.invocation(ctx)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	var resp awsevents.SQSEventResponse
	for _, r := range ev.Records {
		if soft.Err() != nil || !h.check(ctx, soft, log, r) {
			if soft.Err() != nil {
				nackRecord(ctx, log, h.control, r, 0)
			}
			resp.BatchItemFailures = append(resp.BatchItemFailures, awsevents.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp, nil
}

// check handles one record and returns whether it may be deleted.
func (h *Assembler) check(ctx, soft context.Context, log *slog.Logger, r awsevents.SQSMessage) bool {
	attempt := receiveCount(r.Attributes)
	log = log.With("messageId", r.MessageId, "attempt", attempt)
	env, err := events.Decode([]byte(r.Body))
	if err == nil && env.Check == nil {
		err = fmt.Errorf("%w: a task message on the control queue", events.ErrBadMessage)
	}
	if err != nil {
		log.Error("malformed check message", "err", err)
		nackRecord(ctx, log, h.control, r, 0)
		return false
	}
	id := env.Check.Job
	log = log.With("job", id)
	before, err := h.jobs.ReadJob(soft, id)
	switch {
	case errors.Is(err, blob.ErrNotExist):
		log.Warn("check of an unknown job (expired or never created); dropping it")
		return true
	case err != nil:
		log.Error("could not read the job", "err", err)
		nackRecord(ctx, log, h.control, r, h.retryDelay(attempt))
		return false
	case before.State.Terminal():
		return true // a duplicate check of a finished job
	}
	if age := h.now().Sub(before.CreatedAt); age > h.cfg.JobTimeout {
		before.Errors = append(before.Errors, events.JobError{Task: "timeout", Unit: "job",
			Message: fmt.Sprintf("not finished %s after it was created (state %s); giving up", age.Round(time.Second), before.State)})
		before.State = events.StateFailed
		if err := h.jobs.WriteJob(soft, before); err != nil {
			log.Error("could not record the job's timeout", "err", err)
			nackRecord(ctx, log, h.control, r, h.retryDelay(attempt))
			return false
		}
		h.jobFinished(log, before)
		return true
	}
	c := *h.controller
	c.Log = log
	after, err := c.Check(soft, id)
	if err != nil {
		log.Error("check failed; retrying it", "err", err)
		nackRecord(ctx, log, h.control, r, h.retryDelay(attempt))
		return false
	}
	if after.State != before.State || after.Phase != before.Phase {
		log.Info("job advanced", "from", before.State, "to", after.State, "phase", after.Phase)
	}
	if after.State.Terminal() {
		h.jobFinished(log, after)
	}
	return true
}

func (h *Assembler) jobFinished(log *slog.Logger, job *events.Job) {
	props := map[string]any{"job": job.ID, "kind": string(job.Kind)}
	ms := []metrics.Metric{metrics.Since(metrics.Duration, job.CreatedAt, h.now())}
	level := ""
	if job.State == events.StateDone {
		ms = append(ms, metrics.CountOf(metrics.JobsDone, 1))
		if job.Summary != nil && job.Summary.ArchiveSize > 0 {
			ms = append(ms, metrics.BytesOf(metrics.ArchiveBytes, job.Summary.ArchiveSize))
		}
		log.Info("job done", "archive", job.Archive)
	} else {
		ms = append(ms, metrics.CountOf(metrics.JobsFailed, 1))
		level = "ERROR"
		units := make([]string, 0, len(job.Errors))
		for _, e := range job.Errors {
			units = append(units, e.String())
		}
		props["errors"] = units
		log.Error("job failed", "errors", units)
	}
	h.emit(metrics.Doc{Metrics: ms, Properties: props, Level: level})
}
