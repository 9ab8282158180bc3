package serverless

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Worker is the worker function: it runs the tasks of an SQS batch from
// the task queue.
type Worker struct {
	*base
	tasks pipeline.Queue
}

// NewWorker builds the worker from its dependencies: the store, the task
// queue (cfg.MaxAttempts must equal its maxReceiveCount; AWSDeps reads
// it), the EdgeBase client and the EdgeBase secrets store.
func NewWorker(cfg Config, rt Runtime, d Deps) (*Worker, error) {
	if d.Tasks == nil || d.EdgeBase == nil {
		return nil, fmt.Errorf("%w for worker: a task queue and an EdgeBase client are required", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	h := &Worker{base: b, tasks: d.Tasks}
	b.engine.Worker.OnFinish = h.finished
	return h, nil
}

// MaxAttempts is the attempts a task gets (the queue's maxReceiveCount).
func (h *Worker) MaxAttempts() int { return h.engine.Options().MaxAttempts }

// finished sees every recorded task outcome.
func (h *Worker) finished(t events.Task, st events.TaskStatus) {
	var ms []metrics.Metric
	level := ""
	switch st.State {
	case events.TaskDone:
		ms = append(ms, metrics.CountOf(metrics.UnitsDone, 1), metrics.BytesOf(metrics.Bytes, st.Bytes))
	case events.TaskFailed:
		ms = append(ms, metrics.CountOf(metrics.UnitsFailed, 1))
		level = "ERROR"
	default:
		ms = append(ms, metrics.CountOf(metrics.UnitsRetried, 1))
	}
	h.emit(metrics.Doc{Metrics: ms, Level: level,
		Properties: map[string]any{"job": t.Job, "task": t.ID, "taskKind": string(t.Kind), "unit": t.Unit, "attempts": st.Attempts}})
}

// Handle runs the batch's tasks, at most BatchConcurrency at once, and
// reports the ones to retry. Work stops DeadlineMargin before the Lambda
// deadline: records not started by then, and tasks cut short, are
// reported as failures and made visible again at once.
func (h *Worker) Handle(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
	start := h.now()
	log, reqID := h.invocation(ctx)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	eng := h.engine.WithLog(log)
	failed := make([]bool, len(ev.Records))
	sem := make(chan struct{}, h.cfg.BatchConcurrency)
	var wg sync.WaitGroup
	for i, r := range ev.Records {
		select {
		case sem <- struct{}{}:
		case <-soft.Done():
		}
		if soft.Err() != nil {
			failed[i] = !h.process(ctx, soft, eng, log, r)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			failed[i] = !h.process(ctx, soft, eng, log, r)
		})
	}
	wg.Wait()
	var resp awsevents.SQSEventResponse
	for i, f := range failed {
		if f {
			resp.BatchItemFailures = append(resp.BatchItemFailures, awsevents.SQSBatchItemFailure{ItemIdentifier: ev.Records[i].MessageId})
		}
	}
	log.Info("batch done", "records", len(ev.Records), "failures", len(resp.BatchItemFailures))
	h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.Since(metrics.Duration, start, h.now())}, Properties: map[string]any{"requestId": reqID}})
	return resp, nil
}

// process runs one record (none, when soft has already ended) and settles
// it with the engine's delivery decision; it returns whether the record
// may be deleted.
func (h *Worker) process(ctx, soft context.Context, eng *pipeline.Engine, log *slog.Logger, r awsevents.SQSMessage) bool {
	attempt := receiveCount(r.Attributes)
	log = log.With("messageId", r.MessageId, "attempt", attempt)
	d := pipeline.Delivery{Message: pipeline.Message{Body: []byte(r.Body)}, ID: r.MessageId, Receipt: r.ReceiptHandle, Attempt: attempt}
	env, err := events.Decode(d.Body)
	if err == nil && env.Task == nil {
		err = fmt.Errorf("%w: a check message on the task queue", events.ErrBadMessage)
	}
	if err != nil {
		// It can never succeed: let it reach the dead-letter queue quickly.
		log.Error("malformed task message", "err", err)
		return h.settle(ctx, log, d, pipeline.Decision{Action: pipeline.DeadLetter})
	}
	t := *env.Task
	if soft.Err() == nil {
		start := h.now()
		err = eng.Worker.Process(soft, t, attempt)
		h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.Since(metrics.TaskDuration, start, h.now())},
			Properties: map[string]any{"job": t.Job, "task": t.ID, "taskKind": string(t.Kind)}})
	} else {
		err = soft.Err()
	}
	dec := pipeline.Decide(soft, err, attempt, eng.Options().MaxAttempts, eng.Options().Backoff)
	if dec.Action == pipeline.Retry && soft.Err() != nil {
		log.Warn("task not run or cut short by the deadline; it will be redelivered", "task", t.ID, "unit", t.Unit)
		if attempt >= eng.Options().MaxAttempts {
			// SQS dead-letters it next: record why, or its job would wait
			// for an outcome that never comes.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			eng.Worker.RecordLost(wctx, t, attempt, "not finished before the Lambda deadline on its last delivery")
			cancel()
		}
	}
	return h.settle(ctx, log, d, dec)
}

// settle carries out a delivery decision; the event source deletes the
// records reported as handled.
func (h *Worker) settle(ctx context.Context, log *slog.Logger, d pipeline.Delivery, dec pipeline.Decision) bool {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	handled, err := pipeline.Settle(sctx, h.tasks, d, dec, nil)
	if err != nil {
		log.Warn("could not settle a task message; it comes back after the queue's visibility timeout", "action", dec.Action.String(), "err", err)
	}
	return handled
}
