package serverless

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/restore"
)

// Scheduler is the scheduler function: it starts a backup or restore job
// (job record, plan, first phase of tasks, first delayed check).
type Scheduler struct {
	*base
	sched *backup.Scheduler
}

// StartResult is the scheduler's answer (seen by synchronous invokes).
type StartResult struct {
	JobID string          `json:"jobId"`
	Kind  events.JobKind  `json:"kind"`
	State events.JobState `json:"state"`
	Tasks int             `json:"tasks"`
	Error string          `json:"error,omitempty"`
}

// NewScheduler connects the scheduler: S3, both queues, the service key
// (and Cloudflare token in Edge mode) from Secrets Manager.
func NewScheduler(ctx context.Context, cfg Config, rt Runtime) (*Scheduler, error) {
	b, err := newBase(ctx, cfg, rt)
	if err != nil {
		return nil, err
	}
	creds, err := b.readCredentials(ctx)
	if err != nil {
		return nil, err
	}
	client, enum, err := b.edgeBase(creds)
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
	h := &Scheduler{base: b}
	h.sched = &backup.Scheduler{
		Jobs: b.jobs,
		Planners: map[events.JobKind]backup.Planner{
			events.KindBackup: &backup.BackupPlanner{Jobs: b.jobs, Client: client, Enum: enum, Log: b.log},
			events.KindRestore: &restore.Planner{Jobs: b.jobs, Client: client, Enum: enum, Log: b.log,
				Open: h.openArchive},
		},
		Tasks:      tasks,
		Controller: &backup.Controller{Jobs: b.jobs, Control: control, RecheckDelay: cfg.RecheckDelay},
		Target:     client.BaseURL(),
		Source:     backup.SourceFor(client.BaseURL(), enum.Edge != nil),
		Log:        b.log,
	}
	return h, nil
}

// ErrBadInput marks an invocation payload that can never start a job.
var ErrBadInput = errors.New("serverless: bad input")

// Handle takes a StartRequest (the api's asynchronous invoke, or an
// EventBridge rule's constant input) or a whole EventBridge scheduled
// event (whose detail may hold StartRequest fields). Without a job id the
// id is derived from the invocation (the EventBridge event id, else the
// Lambda request id, which Lambda keeps across its retries of an
// asynchronous invoke), so a retried or duplicated start finds the job
// it already created instead of starting a second one.
func (h *Scheduler) Handle(ctx context.Context, payload json.RawMessage) (StartResult, error) {
	start := h.now()
	log, reqID := h.invocation(ctx)
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
	s := *h.sched
	s.Log = log
	job, err := s.Start(ctx, req)
	if job != nil {
		if ierr := writeIndex(context.WithoutCancel(ctx), h.jobs, job); ierr != nil {
			log.Warn("could not index the job", "err", ierr)
		}
	}
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
		h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.CountOf(metrics.JobsFailed, 1)}, Properties: props, Level: "ERROR"})
		return res, nil
	default:
		log.Error("could not start the job; the invocation will be retried", "err", err)
		return res, err
	}
}

// openArchive resolves a restore's archive: a key under the archive prefix
// (or a bare archive name, taken to be there) that exists in the bucket.
func (h *Scheduler) openArchive(ctx context.Context, name string) (restore.Source, error) {
	key, err := ArchiveKey(h.cfg.ArchivePrefix, name)
	if err != nil {
		return nil, err
	}
	if _, err := h.store.Stat(ctx, key); err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			return nil, fmt.Errorf("archive %s does not exist in the backup bucket", key)
		}
		return nil, err
	}
	return restore.BlobSource{Store: h.store, Key: key}, nil
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
	if req.JobID != "" && !validJobID(req.JobID) {
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

// validJobID accepts the ids the scheduler and api generate and anything
// similar: a single key segment of safe characters.
func validJobID(id string) bool {
	if len(id) == 0 || len(id) > 128 || id == "index" || id == "names" {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return id != "." && id != ".."
}

// newJobID is the api's id for a job it starts: kind, UTC time and a
// suffix that is random, or derived from the client's idempotency key.
func newJobID(kind events.JobKind, now time.Time, idempotencyKey string) string {
	if idempotencyKey != "" {
		return fmt.Sprintf("%s-%s", kind, shortHash("idempotency:"+string(kind)+":"+idempotencyKey, 16))
	}
	return backup.NewJobID(kind, now)
}
