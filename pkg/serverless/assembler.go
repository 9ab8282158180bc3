package serverless

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Assembler is the assembler function: it handles the check messages of
// the control queue with the engine's controller (pipeline.HandleCheck):
// each check queues its successor, claims its sequence number, then
// re-sends a phase that was not fully queued, fails a job whose task
// failed for good or that ran too long, opens a restore's next phase, or
// assembles a backup whose tasks are all done.
type Assembler struct {
	*base
	control pipeline.Queue
}

// NewAssembler builds the assembler: the store and both queues (a
// restore's next phase goes to the task queue).
func NewAssembler(cfg Config, rt Runtime, d Deps) (*Assembler, error) {
	if d.Tasks == nil || d.Control == nil {
		return nil, fmt.Errorf("%w for assembler: the task and control queues are required", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	return &Assembler{base: b, control: d.Control}, nil
}

// Handle checks the job of every record (the stack sends batches of one).
func (h *Assembler) Handle(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
	log, _ := h.invocation(ctx)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	var resp awsevents.SQSEventResponse
	for _, r := range ev.Records {
		if !h.check(ctx, soft, log, r) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, awsevents.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp, nil
}

// check handles one record and returns whether it may be deleted.
func (h *Assembler) check(ctx, soft context.Context, log *slog.Logger, r awsevents.SQSMessage) bool {
	attempt := receiveCount(r.Attributes)
	log = log.With("messageId", r.MessageId, "attempt", attempt)
	d := pipeline.Delivery{Message: pipeline.Message{Body: []byte(r.Body)}, ID: r.MessageId, Receipt: r.ReceiptHandle, Attempt: attempt}
	env, err := events.Decode(d.Body)
	if err == nil && env.Check == nil {
		err = fmt.Errorf("%w: a task message on the control queue", events.ErrBadMessage)
	}
	if err != nil {
		log.Error("malformed check message", "err", err)
		return h.settle(ctx, log, d, pipeline.Decision{Action: pipeline.DeadLetter})
	}
	if soft.Err() != nil {
		return h.settle(ctx, log, d, pipeline.Decision{Action: pipeline.Retry})
	}
	log = log.With("job", env.Check.Job, "seq", env.Check.Seq)
	before, _ := h.jobs.ReadJob(soft, env.Check.Job)
	after, err := h.engine.WithLog(log).HandleCheck(soft, *env.Check)
	if err != nil {
		// Its successor may already be queued (then this one is stale when
		// it comes back); otherwise the retry queues it.
		log.Error("check failed; retrying it", "err", err)
		return h.settle(ctx, log, d, pipeline.Decision{Action: pipeline.Retry, Delay: h.engine.Options().Backoff.Delay(attempt)})
	}
	if before != nil && after != nil && !before.State.Terminal() {
		if after.State != before.State || after.Phase != before.Phase {
			log.Info("job advanced", "from", before.State, "to", after.State, "phase", after.Phase)
		}
		if after.State.Terminal() {
			h.jobFinished(log, after)
		}
	}
	// Also when the job ended in an earlier delivery: one that stopped
	// before notifying leaves the notification to this one.
	if after != nil && after.State.Terminal() && !h.notifyEnd(soft, log, after) {
		return h.settle(ctx, log, d, pipeline.Decision{Action: pipeline.Retry, Delay: h.engine.Options().Backoff.Delay(attempt)})
	}
	return true
}

func (h *Assembler) settle(ctx context.Context, log *slog.Logger, d pipeline.Delivery, dec pipeline.Decision) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	handled, err := pipeline.Settle(sctx, h.control, d, dec, nil)
	if err != nil {
		log.Warn("could not settle a check message; it comes back after the queue's visibility timeout", "err", err)
	}
	return handled
}

// jobFinished emits the metrics of a job that just ended.
func (b *base) jobFinished(log *slog.Logger, job *events.Job) {
	props := map[string]any{"job": job.ID, "kind": string(job.Kind)}
	ms := []metrics.Metric{metrics.Since(metrics.Duration, job.CreatedAt, b.now())}
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
	b.emit(metrics.Doc{Metrics: ms, Properties: props, Level: level})
}
