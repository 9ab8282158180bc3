package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/secrets"
	"github.com/edgevault/edgevault/pkg/secrets/secretsmanager"
)

// Worker is the worker function: it runs the tasks of an SQS batch from
// the task queue.
type Worker struct {
	*base
	worker *backup.Worker
	tasks  backup.Queue
}

// NewWorker connects the worker: S3, the task queue (whose redrive policy
// gives MaxAttempts), the service key and the EdgeBase secrets store.
func NewWorker(ctx context.Context, cfg Config, rt Runtime) (*Worker, error) {
	b, err := newBase(ctx, cfg, rt)
	if err != nil {
		return nil, err
	}
	if n, err := maxReceiveCount(ctx, b.clients.SQS(), cfg.TaskQueueURL); err != nil {
		return nil, err
	} else if n > 0 {
		b.cfg.MaxAttempts = n
	}
	creds, err := b.readCredentials(ctx)
	if err != nil {
		return nil, err
	}
	client, _, err := b.edgeBase(creds)
	if err != nil {
		return nil, err
	}
	var secretStore secrets.Store
	if cfg.EdgeBaseSecrets != "" {
		if secretStore, err = secretsmanager.NewStore(b.clients.SecretsManager(), cfg.EdgeBaseSecrets); err != nil {
			return nil, err
		}
	}
	tasks, err := b.queue(cfg.TaskQueueURL)
	if err != nil {
		return nil, err
	}
	handlers := (&backup.BackupTasks{Jobs: b.jobs, Client: client, Secrets: secretStore, Concurrency: cfg.Concurrency}).Handlers()
	rt2 := &restore.Tasks{Jobs: b.jobs, Client: client, Secrets: secretStore,
		Concurrency: restore.Concurrency{DOs: cfg.Concurrency, Namespaces: cfg.Concurrency, Objects: cfg.Concurrency}}
	for k, h := range rt2.Handlers() {
		handlers[k] = h
	}
	h := &Worker{base: b, tasks: tasks}
	h.worker = &backup.Worker{Jobs: b.jobs, Handlers: handlers, MaxAttempts: b.cfg.MaxAttempts, Log: b.log, OnFinish: h.finished}
	return h, nil
}

// maxReceiveCount reads the queue's dead-letter maxReceiveCount (0 when
// the queue has no redrive policy).
func maxReceiveCount(ctx context.Context, c *sqs.Client, url string) (int, error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return 0, fmt.Errorf("serverless: reading the redrive policy of %s: %w", url, err)
	}
	raw := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if raw == "" {
		return 0, nil
	}
	var p struct {
		MaxReceiveCount any `json:"maxReceiveCount"` // a number, or a string of one
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return 0, fmt.Errorf("serverless: redrive policy of %s: %w", url, err)
	}
	n, err := strconv.Atoi(fmt.Sprint(p.MaxReceiveCount))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("serverless: redrive policy of %s has maxReceiveCount %v", url, p.MaxReceiveCount)
	}
	return n, nil
}

// MaxAttempts is the attempts a task gets (the queue's maxReceiveCount).
func (h *Worker) MaxAttempts() int { return h.worker.MaxAttempts }

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
	w := *h.worker
	w.Log = log
	failed := make([]bool, len(ev.Records))
	sem := make(chan struct{}, h.cfg.BatchConcurrency)
	var wg sync.WaitGroup
	for i, r := range ev.Records {
		select {
		case sem <- struct{}{}:
		case <-soft.Done():
		}
		if soft.Err() != nil {
			failed[i] = true
			h.notStarted(ctx, log, r)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			failed[i] = !h.process(ctx, soft, &w, log, r)
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

// process runs one record; it returns whether the message may be deleted.
func (h *Worker) process(ctx, soft context.Context, w *backup.Worker, log *slog.Logger, r awsevents.SQSMessage) bool {
	attempt := receiveCount(r.Attributes)
	log = log.With("messageId", r.MessageId, "attempt", attempt)
	env, err := events.Decode([]byte(r.Body))
	if err == nil && env.Task == nil {
		err = fmt.Errorf("%w: a check message on the task queue", events.ErrBadMessage)
	}
	if err != nil {
		// It can never succeed: let it reach the dead-letter queue quickly.
		log.Error("malformed task message", "err", err)
		h.nack(ctx, log, r, 0)
		return false
	}
	t := *env.Task
	start := h.now()
	perr := w.Process(soft, t, attempt)
	h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.Since(metrics.TaskDuration, start, h.now())},
		Properties: map[string]any{"job": t.Job, "task": t.ID, "taskKind": string(t.Kind)}})
	switch {
	case perr == nil:
		return true
	case soft.Err() != nil:
		log.Warn("task cut short by the deadline; it will be redelivered", "task", t.ID, "unit", t.Unit)
		if attempt >= w.MaxAttempts {
			h.recordLost(ctx, log, t, attempt, "cut short by the Lambda deadline on its last delivery")
		}
		h.nack(ctx, log, r, 0)
	case errors.Is(perr, backup.ErrTaskFailed), backup.IsPermanent(perr), attempt >= w.MaxAttempts:
		// Recorded as failed: report it until SQS dead-letters it.
		h.nack(ctx, log, r, 0)
	case errors.Is(perr, backup.ErrBusy):
		h.nack(ctx, log, r, h.cfg.RetryDelay)
	default:
		h.nack(ctx, log, r, h.retryDelay(attempt))
	}
	return false
}

// notStarted handles a record the deadline left no time for.
func (h *Worker) notStarted(ctx context.Context, log *slog.Logger, r awsevents.SQSMessage) {
	attempt := receiveCount(r.Attributes)
	if env, err := events.Decode([]byte(r.Body)); err == nil && env.Task != nil && attempt >= h.worker.MaxAttempts {
		h.recordLost(ctx, log, *env.Task, attempt, "not started before the Lambda deadline on its last delivery")
	}
	h.nack(ctx, log, r, 0)
}

// recordLost records a task as failed when its last delivery could not run
// it: SQS dead-letters the message next, and a job whose task has no
// outcome would otherwise wait for it until it timed out.
func (h *Worker) recordLost(ctx context.Context, log *slog.Logger, t events.Task, attempt int, why string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if st, err := h.jobs.ReadStatus(wctx, t.Job, t.ID); err == nil && st.State == events.TaskDone {
		return
	} else if err != nil && !errors.Is(err, blob.ErrNotExist) {
		log.Error("could not read the status of a lost task", "task", t.ID, "err", err)
		return
	}
	st := events.TaskStatus{Task: t.ID, Unit: t.Unit, Phase: t.Phase, State: events.TaskFailed, Attempts: attempt, Error: why, Finished: h.now().UTC()}
	if err := h.jobs.WriteStatus(wctx, t.Job, st); err != nil {
		log.Error("could not record a lost task as failed", "task", t.ID, "err", err)
		return
	}
	h.finished(t, st)
}

// nack sets when a failed message is seen again: a failed record would
// otherwise wait out the queue's whole visibility timeout (six times the
// function timeout) before its retry.
func (h *Worker) nack(ctx context.Context, log *slog.Logger, r awsevents.SQSMessage, delay time.Duration) {
	nackRecord(ctx, log, h.tasks, r, delay)
}

func nackRecord(ctx context.Context, log *slog.Logger, q backup.Queue, r awsevents.SQSMessage, delay time.Duration) {
	if r.ReceiptHandle == "" {
		return
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	d := backup.Delivery{ID: r.MessageId, Receipt: r.ReceiptHandle}
	if err := q.Nack(nctx, d, delay); err != nil {
		log.Warn("could not change the visibility of a failed message; it comes back after the queue's visibility timeout", "messageId", r.MessageId, "err", err)
	}
}
