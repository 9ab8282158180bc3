package serverless

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/restore"
)

// Scheduler is the scheduler function: it starts a backup or restore job
// (job record, plan, first check, first phase of tasks), and, invoked with
// lambdaenv.WatchdogInput on its own schedule, runs the engine's watchdog.
type Scheduler struct {
	*base
}

// StartResult is the scheduler's answer (seen by synchronous invokes).
type StartResult struct {
	JobID string          `json:"jobId"`
	Kind  events.JobKind  `json:"kind"`
	State events.JobState `json:"state"`
	Tasks int             `json:"tasks"`
	Error string          `json:"error,omitempty"`
	// Watchdog is the report of a watchdog round.
	Watchdog *pipeline.WatchdogReport `json:"watchdog,omitempty"`
}

// NewScheduler builds the scheduler: the store, both queues, the EdgeBase
// client and the DO enumeration.
func NewScheduler(cfg Config, rt Runtime, d Deps) (*Scheduler, error) {
	if d.Tasks == nil || d.Control == nil || d.EdgeBase == nil || d.Enum == nil {
		return nil, fmt.Errorf("%w for scheduler: both queues, an EdgeBase client and DO enumeration are required", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	return &Scheduler{base: b}, nil
}

// ErrBadInput marks an invocation payload that can never start a job.
var ErrBadInput = errors.New("serverless: bad input")

// Handle takes a StartRequest (the api's asynchronous invoke, or an
// EventBridge rule's constant input) or a whole EventBridge scheduled
// event (whose detail may hold StartRequest fields). Without a job id the
// id is derived from the invocation (the EventBridge event id, else the
// Lambda request id, which Lambda keeps across its retries of an
// asynchronous invoke), so a retried or duplicated start finds the job
// it already created (and re-sends what the first attempt may not have)
// instead of starting a second one. Planning stops DeadlineMargin before
// the Lambda deadline and fails the job with that reason, rather than
// being killed half-way.
func (h *Scheduler) Handle(ctx context.Context, payload json.RawMessage) (StartResult, error) {
	start := h.now()
	log, reqID := h.invocation(ctx)
	if isWatchdog(payload) {
		return h.watchdog(ctx, log)
	}
	req, key, err := decodeStart(payload, reqID)
	if err != nil {
		log.Error("rejected scheduler input", "err", err)
		return StartResult{}, err
	}
	if req.JobID == "" {
		if key == "" {
			return StartResult{}, fmt.Errorf("%w: no jobId and no invocation id to derive one from", ErrBadInput)
		}
		req.JobID = deriveJobID(req.Kind, key)
	}
	log = log.With("job", req.JobID, "kind", req.Kind)
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	job, err := h.engine.WithLog(log).Start(soft, req)
	res := StartResult{JobID: req.JobID, Kind: req.Kind}
	if job != nil {
		res.State, res.Tasks = job.State, job.Tasks
	}
	props := map[string]any{"requestId": reqID, "job": req.JobID, "kind": string(req.Kind)}
	switch {
	case err == nil:
		log.Info("job started", "state", job.State, "tasks", job.Tasks, "warnings", len(job.Warnings))
		h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(metrics.JobsStarted, 1), metrics.Since(metrics.Duration, start, h.now())}, Properties: props})
		return res, nil
	case job != nil && job.State == events.StateFailed:
		// Recorded in the job (the api shows it); a retry would find the
		// failed record and change nothing.
		res.Error = err.Error()
		log.Error("job failed while planning", "err", err)
		h.jobFinished(log, job)
		if !h.notifyEnd(soft, log, job) {
			return res, errors.New("the job failed and its notification could not be sent; the invocation is retried to send it")
		}
		return res, nil
	default:
		log.Error("could not start the job; the invocation will be retried", "err", err)
		return res, err
	}
}

// isWatchdog reports whether payload is the watchdog rule's input.
func isWatchdog(payload json.RawMessage) bool {
	var p struct {
		Watchdog bool `json:"watchdog"`
	}
	return json.Unmarshal(payload, &p) == nil && p.Watchdog
}

func (h *Scheduler) watchdog(ctx context.Context, log *slog.Logger) (StartResult, error) {
	soft, cancel := softDeadline(ctx, h.cfg.DeadlineMargin)
	defer cancel()
	rep, err := h.engine.WithLog(log).Watchdog(soft)
	log.Info("watchdog round", "jobs", rep.Jobs, "revived", rep.Revived, "failed", rep.Failed, "err", err)
	if n := len(rep.Revived) + len(rep.Failed); n > 0 {
		h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(metrics.JobsStalled, int64(n))},
			Properties: map[string]any{"revived": rep.Revived, "failed": rep.Failed}, Level: "WARN"})
	}
	return StartResult{Watchdog: &rep}, err
}

// openArchive resolves a restore's archive: a key under the archive prefix
// (or a bare archive name, taken to be there) that exists in the bucket.
func (b *base) openArchive(ctx context.Context, name string) (restore.Source, error) {
	key, err := ArchiveKey(b.cfg.ArchivePrefix, name)
	if err != nil {
		return nil, err
	}
	if _, err := b.store.Stat(ctx, key); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, fmt.Errorf("archive %s does not exist in the backup bucket", key)
		}
		return nil, err
	}
	return restore.BlobSource{Store: b.store, Key: key}, nil
}

// ArchiveKey turns what a user names an archive by (its key, or its file
// name) into its key under prefix, refusing anything else in the bucket.
func ArchiveKey(prefix, name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("no archive given")
	}
	key := name
	if !strings.HasPrefix(key, prefix) {
		key = prefix + name
	}
	rest := strings.TrimPrefix(key, prefix)
	if strings.Contains(rest, "/") || !archive.IsArchiveName(rest) || blob.ValidateKey(key) != nil {
		return "", fmt.Errorf("%q is not a backup archive (want %sedgebase-backup-<time>.json or .tar.gz)", name, prefix)
	}
	return key, nil
}

// decodeStart reads either payload shape and returns the request and the
// invocation key a job id may be derived from.
func decodeStart(payload json.RawMessage, reqID string) (events.StartRequest, string, error) {
	var probe struct {
		DetailType string `json:"detail-type"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return events.StartRequest{}, "", fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	var req events.StartRequest
	key := ""
	if probe.DetailType != "" {
		var ev awsevents.EventBridgeEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return req, "", fmt.Errorf("%w: EventBridge event: %v", ErrBadInput, err)
		}
		if len(bytes.TrimSpace(ev.Detail)) > 0 && !bytes.Equal(bytes.TrimSpace(ev.Detail), []byte("{}")) {
			if err := strictDecode(ev.Detail, &req); err != nil {
				return req, "", fmt.Errorf("%w: EventBridge detail: %v", ErrBadInput, err)
			}
		}
		if req.Kind == "" {
			req.Kind = events.KindBackup
		}
		if req.Trigger == "" {
			req.Trigger = events.TriggerSchedule
		}
		if ev.ID != "" {
			key = "eventbridge:" + ev.ID
			if req.JobID == "" && !ev.Time.IsZero() {
				req.JobID = fmt.Sprintf("%s-%s-%s", req.Kind, ev.Time.UTC().Format("20060102T150405Z"), shortHash(key, 8))
			}
		}
	} else if err := strictDecode(payload, &req); err != nil {
		return req, "", fmt.Errorf("%w: start request: %v", ErrBadInput, err)
	}
	if req.Kind != events.KindBackup && req.Kind != events.KindRestore {
		return req, "", fmt.Errorf("%w: kind %q (want backup or restore)", ErrBadInput, req.Kind)
	}
	if req.Trigger == "" {
		req.Trigger = events.TriggerSchedule
	}
	if req.JobID != "" && !pipeline.ValidJobID(req.JobID) {
		return req, "", fmt.Errorf("%w: job id %q", ErrBadInput, req.JobID)
	}
	if key == "" && reqID != "" {
		key = "lambda:" + reqID
	}
	return req, key, nil
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// deriveJobID is the job id of an invocation that named none.
func deriveJobID(kind events.JobKind, key string) string {
	return fmt.Sprintf("%s-%s", kind, shortHash(key, 16))
}

// newJobID is the api's id for a job it starts: kind, UTC time and a
// suffix that is random, or derived from the client's idempotency key.
func newJobID(kind events.JobKind, now time.Time, idempotencyKey string) string {
	if idempotencyKey != "" {
		return fmt.Sprintf("%s-%s", kind, shortHash("idempotency:"+string(kind)+":"+idempotencyKey, 16))
	}
	return pipeline.NewJobID(kind, now)
}
