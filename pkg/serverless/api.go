package serverless

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/restore"
)

// API is the api function behind an API Gateway REST API (proxy
// integration):
//
//	POST /backups        {includeStorage, includeSecrets}          202 {id}
//	GET  /backups        ?limit=&cursor=  newest first             200 {items, nextCursor}
//	GET  /backups/{id}   state, units, bytes, errors, archive      200
//	POST /restores       {archive, skipStorage, skipSecrets, only, allowSchemaDrift, confirm: true}
//	GET  /restores       ?limit=&cursor=                           200
//	GET  /restores/{id}  as for backups, plus the restore phase    200
//
// Errors are {"error": {"code", "message"}} with a 4xx status for the
// caller's mistakes. Starting a job returns 202 at once: the scheduler
// function plans it asynchronously, and GET shows it within seconds.
//
// An Idempotency-Key header makes a retried POST return the same job: the
// api records the key (per caller and kind) with a digest of the request
// under <staging>idempotency/, created once; the same key with another
// request is refused (409 idempotency_key_reused) instead of answering
// with a job that does something else. Keys are remembered as long as the
// staging area keeps objects (the stack's lifecycle rule: a day).
//
// Unless the stack allows it (EDGEVAULT_API_ALLOW_SECRETS), a backup
// including the EdgeBase secrets and a restore writing them back are
// refused (403 secrets_not_allowed). A start that the target's lock would
// refuse (a restore beside any running job, anything beside a running
// restore; pipeline.Jobs.AcquireTarget) is answered 409 target_busy,
// naming the running job; the scheduler enforces the lock itself, this
// only answers early. The caller (the IAM principal API Gateway
// authenticated) is recorded in the job (requestedBy) and in the access
// log line.
type API struct {
	*base
	invoker Invoker
}

// maxBody bounds request bodies; a start request is a few hundred bytes.
const maxBody = 64 << 10

// NewAPI builds the api: the store (job records) and the invoker that
// hands start requests to the scheduler.
func NewAPI(cfg Config, rt Runtime, d Deps) (*API, error) {
	if d.Invoker == nil {
		return nil, fmt.Errorf("%w for api: no scheduler invoker", ErrConfig)
	}
	b, err := newBase(cfg, rt, d)
	if err != nil {
		return nil, err
	}
	return &API{base: b, invoker: d.Invoker}, nil
}

// apiError is a response the caller can act on.
type apiError struct {
	status  int
	code    string
	message string
	allow   string // for 405
	job     string // the job concerned (409)
}

func (e *apiError) Error() string { return e.message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf(format, args...)}
}

// Handle implements the REST API.
func (h *API) Handle(ctx context.Context, req awsevents.APIGatewayProxyRequest) (awsevents.APIGatewayProxyResponse, error) {
	start := h.now()
	log, reqID := h.invocation(ctx)
	if reqID == "" {
		reqID = req.RequestContext.RequestID
	}
	caller := callerOf(req)
	log = log.With("method", req.HTTPMethod, "path", req.Path, "caller", caller)
	status, body, headers, err := h.route(ctx, log, req)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			log.Error("request failed", "err", err)
			ae = &apiError{status: http.StatusInternalServerError, code: "internal_error", message: "the request failed; see the function's log (request " + reqID + ")"}
		}
		status = ae.status
		e := map[string]any{"code": ae.code, "message": ae.message, "requestId": reqID}
		if ae.job != "" {
			e["job"] = ae.job
		}
		body = map[string]any{"error": e}
		if ae.allow != "" {
			headers = map[string]string{"Allow": ae.allow}
		}
	}
	b, merr := json.Marshal(body)
	if merr != nil {
		return awsevents.APIGatewayProxyResponse{}, merr
	}
	if headers == nil {
		headers = map[string]string{}
	}
	headers["Content-Type"] = "application/json"
	log.Info("request", "status", status, "took", h.now().Sub(start))
	h.emit(metrics.Doc{Metrics: []metrics.Metric{metrics.Since(metrics.Duration, start, h.now())},
		Properties: map[string]any{"requestId": reqID, "status": status}})
	return awsevents.APIGatewayProxyResponse{StatusCode: status, Headers: headers, Body: string(append(b, '\n'))}, nil
}

func (h *API) route(ctx context.Context, log *slog.Logger, req awsevents.APIGatewayProxyRequest) (int, any, map[string]string, error) {
	path := strings.TrimSuffix(req.Path, "/")
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var kind events.JobKind
	switch segs[0] {
	case "backups":
		kind = events.KindBackup
	case "restores":
		kind = events.KindRestore
	default:
		return 0, nil, nil, notFound("no such resource: %s", req.Path)
	}
	switch {
	case len(segs) == 1:
		switch req.HTTPMethod {
		case http.MethodGet:
			return h.list(ctx, kind, req)
		case http.MethodPost:
			return h.start(ctx, log, kind, req)
		}
		return 0, nil, nil, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			message: fmt.Sprintf("%s is not allowed on /%s", req.HTTPMethod, segs[0]), allow: "GET, POST"}
	case len(segs) == 2 && segs[1] != "":
		if req.HTTPMethod != http.MethodGet {
			return 0, nil, nil, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				message: fmt.Sprintf("%s is not allowed on /%s/{id}", req.HTTPMethod, segs[0]), allow: "GET"}
		}
		return h.get(ctx, kind, segs[1])
	}
	return 0, nil, nil, notFound("no such resource: %s", req.Path)
}

// backupRequest and restoreRequest are the POST bodies.
type backupRequest struct {
	IncludeStorage bool `json:"includeStorage"`
	IncludeSecrets bool `json:"includeSecrets"`
}

type restoreRequest struct {
	Archive          string   `json:"archive"`
	SkipStorage      bool     `json:"skipStorage"`
	FullStorage      bool     `json:"fullStorage"`
	SkipSecrets      bool     `json:"skipSecrets"`
	Only             []string `json:"only"`
	AllowSchemaDrift bool     `json:"allowSchemaDrift"`
	Confirm          *bool    `json:"confirm"`
}

func decodeBody(req awsevents.APIGatewayProxyRequest, v any) error {
	body := []byte(req.Body)
	if req.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(req.Body)
		if err != nil {
			return badRequest("invalid_body", "the body is not valid base64")
		}
		body = b
	}
	if len(body) > maxBody {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "body_too_large", message: fmt.Sprintf("the body exceeds %d bytes", maxBody)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if ct := header(req, "Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", message: "send the body as application/json"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid_body", "the body is not a valid request: %v", err)
	}
	if dec.More() {
		return badRequest("invalid_body", "the body holds more than one JSON value")
	}
	return nil
}

func header(req awsevents.APIGatewayProxyRequest, name string) string {
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	for k, vs := range req.MultiValueHeaders {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

func (h *API) start(ctx context.Context, log *slog.Logger, kind events.JobKind, req awsevents.APIGatewayProxyRequest) (int, any, map[string]string, error) {
	sr := events.StartRequest{Kind: kind, Trigger: events.TriggerAPI, RequestedBy: callerOf(req)}
	if kind == events.KindBackup {
		var in backupRequest
		if err := decodeBody(req, &in); err != nil {
			return 0, nil, nil, err
		}
		if in.IncludeSecrets && !h.cfg.APIAllowSecrets {
			return 0, nil, nil, secretsRefused("back up the EdgeBase secrets", `leave out "includeSecrets"`)
		}
		sr.Options = events.Options{IncludeStorage: in.IncludeStorage, IncludeSecrets: in.IncludeSecrets}
	} else {
		var in restoreRequest
		if err := decodeBody(req, &in); err != nil {
			return 0, nil, nil, err
		}
		if in.Confirm == nil || !*in.Confirm {
			return 0, nil, nil, badRequest("confirmation_required", "a restore replaces the target's data: send \"confirm\": true")
		}
		key, err := ArchiveKey(h.cfg.ArchivePrefix, in.Archive)
		if err != nil {
			return 0, nil, nil, badRequest("invalid_archive", "%v", err)
		}
		if _, err := restore.ParseOnly(in.Only); err != nil {
			return 0, nil, nil, badRequest("invalid_only", "%v", err)
		}
		if !in.SkipSecrets && selectsSecrets(in.Only) && !h.cfg.APIAllowSecrets {
			return 0, nil, nil, secretsRefused("write the EdgeBase secrets back", `send "skipSecrets": true`)
		}
		if _, err := h.store.Stat(ctx, key); errors.Is(err, blob.ErrNotExist) {
			return 0, nil, nil, &apiError{status: http.StatusUnprocessableEntity, code: "archive_not_found", message: fmt.Sprintf("archive %s does not exist", key)}
		} else if err != nil {
			return 0, nil, nil, err
		}
		sr.Options = events.Options{Archive: key, SkipStorage: in.SkipStorage, FullStorage: in.FullStorage, SkipSecrets: in.SkipSecrets, Only: in.Only, AllowSchemaDrift: in.AllowSchemaDrift}
	}
	idem := header(req, "Idempotency-Key")
	if len(idem) > 200 {
		return 0, nil, nil, badRequest("invalid_idempotency_key", "the Idempotency-Key header is longer than 200 characters")
	}
	if idem == "" {
		sr.JobID = newJobID(kind, h.now(), "")
		if err := h.checkTarget(ctx, kind); err != nil {
			return 0, nil, nil, err
		}
	} else {
		scope := idem
		if sr.RequestedBy != "" {
			scope = sr.RequestedBy + "\x00" + idem
		}
		sr.JobID = newJobID(kind, h.now(), scope)
		if err := h.claimKey(ctx, log, kind, scope, sr); err != nil {
			return 0, nil, nil, err
		}
	}
	if err := h.invoker.Start(ctx, sr); err != nil {
		log.Error("could not invoke the scheduler", "err", err)
		return 0, nil, nil, &apiError{status: http.StatusServiceUnavailable, code: "start_failed", message: "the job could not be handed to the scheduler; try again"}
	}
	log.Info("job accepted", "job", sr.JobID, "kind", kind)
	self := "/" + string(kind) + "s/" + sr.JobID
	return http.StatusAccepted, map[string]any{"id": sr.JobID, "kind": kind, "state": "accepted", "options": sr.Options,
		"links": map[string]string{"self": self}}, map[string]string{"Location": self}, nil
}

// callerOf is the IAM principal API Gateway authenticated the request
// with (IAM authorization fills requestContext.identity): its ARN, else
// the caller id ("AROA...:session"); "" without IAM authorization.
func callerOf(req awsevents.APIGatewayProxyRequest) string {
	if id := req.RequestContext.Identity; id.UserArn != "" {
		return id.UserArn
	} else if id.Caller != "" {
		return id.Caller
	}
	return ""
}

func secretsRefused(what, instead string) *apiError {
	return &apiError{status: http.StatusForbidden, code: "secrets_not_allowed",
		message: fmt.Sprintf("this deployment does not let API callers %s (stack setting apiAllowSecrets=false): %s", what, instead)}
}

// selectsSecrets reports whether a restore's "only" list (none: all)
// includes the secrets (restore.ParseOnly's rules).
func selectsSecrets(only []string) bool {
	if len(only) == 0 {
		return true
	}
	for _, raw := range only {
		for _, o := range strings.Split(raw, ",") {
			if strings.TrimSpace(o) == "secrets" {
				return true
			}
		}
	}
	return false
}

// checkTarget answers 409 when a job of kind could not take the target's
// lock now.
func (h *API) checkTarget(ctx context.Context, kind events.JobKind) error {
	busy, err := h.jobs.TargetBusy(ctx, "", kind)
	if err != nil || busy == nil {
		return err
	}
	return &apiError{status: http.StatusConflict, code: "target_busy", job: busy.Job,
		message: fmt.Sprintf("%s job %s is running on the target (since %s); a restore never overlaps another job on its target: wait for it to end (GET /%ss/%s)",
			busy.Kind, busy.Job, busy.Since.UTC().Format(time.RFC3339), busy.Kind, busy.Job)}
}

// idempotencyRecord remembers what an Idempotency-Key was first used for.
type idempotencyRecord struct {
	Job         string         `json:"job"`
	Kind        events.JobKind `json:"kind"`
	Request     string         `json:"request"` // SHA-256 of the normalised request
	RequestedBy string         `json:"requestedBy,omitempty"`
	CreatedAt   time.Time      `json:"createdAt"`
}

// claimKey records the key for sr (Create: exactly one request claims a
// key) or checks that the request that claimed it was the same: a
// different one is refused, the same one is started again (the scheduler
// finds the job it already created, or creates it if the first invoke
// failed). Where no record is found, the job the key names is compared
// too, so a key stays bound to its request even without a record (one
// that expired, or a role that may not write the staging area).
func (h *API) claimKey(ctx context.Context, log *slog.Logger, kind events.JobKind, scope string, sr events.StartRequest) error {
	digest := requestDigest(sr)
	rec := idempotencyRecord{Job: sr.JobID, Kind: kind, Request: digest, RequestedBy: sr.RequestedBy, CreatedAt: h.now().UTC()}
	key := h.cfg.StagingPrefix + lambdaenv.IdempotencyDir + string(kind) + "-" + shortHash(scope, 32) + ".json"
	reused := func(have idempotencyRecord) error {
		if have.Request == digest && have.Job == sr.JobID {
			return nil
		}
		return &apiError{status: http.StatusConflict, code: "idempotency_key_reused", job: have.Job,
			message: fmt.Sprintf("this Idempotency-Key was used at %s for another request (job %s); use a new key for a different request",
				have.CreatedAt.UTC().Format(time.RFC3339), have.Job)}
	}
	var have idempotencyRecord
	err := h.jobs.GetJSON(ctx, key, &have)
	if err == nil {
		return reused(have)
	}
	if !errors.Is(err, blob.ErrNotExist) {
		return err
	}
	if job, err := h.jobs.ReadJob(ctx, sr.JobID); err == nil {
		return reused(idempotencyRecord{Job: job.ID, Request: requestDigest(events.StartRequest{Kind: job.Kind, Options: job.Options}), CreatedAt: job.CreatedAt})
	} else if !errors.Is(err, blob.ErrNotExist) {
		return err
	}
	if err := h.checkTarget(ctx, kind); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = h.store.Create(ctx, key, bytes.NewReader(b))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blob.ErrExist):
		// A concurrent request claimed the key first.
		if err := h.jobs.GetJSON(ctx, key, &have); err != nil {
			return err
		}
		return reused(have)
	case pipeline.IsPermanent(err):
		// The function's role may not write the staging area (a stack
		// from before idempotency records): the job record is the only
		// binding, from when the scheduler has created it.
		log.Warn("could not record the idempotency key; relying on the job record", "err", err)
		return nil
	}
	return err
}

// requestDigest is the SHA-256 of a start request's kind and options,
// normalised (field order and defaults do not matter).
func requestDigest(sr events.StartRequest) string {
	b, _ := json.Marshal(struct {
		Kind    events.JobKind `json:"kind"`
		Options events.Options `json:"options"`
	}{sr.Kind, sr.Options})
	return shortHash(string(b), 64)
}

// jobSummary is one item of a listing.
type jobSummary struct {
	ID          string          `json:"id"`
	Kind        events.JobKind  `json:"kind"`
	State       events.JobState `json:"state"`
	Trigger     events.Trigger  `json:"trigger"`
	RequestedBy string          `json:"requestedBy,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
	Tasks       int             `json:"unitsTotal"`
	Archive     string          `json:"archive,omitempty"`
	Snapshot    string          `json:"snapshot,omitempty"`
	Failed      int             `json:"errors,omitempty"`
}

func (h *API) list(ctx context.Context, kind events.JobKind, req awsevents.APIGatewayProxyRequest) (int, any, map[string]string, error) {
	limit := DefaultListLimit
	if v := req.QueryStringParameters["limit"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return 0, nil, nil, badRequest("invalid_limit", "limit must be 1..%d", MaxListLimit)
		}
		limit = n
	}
	after := ""
	if c := req.QueryStringParameters["cursor"]; c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 || strings.ContainsAny(string(b), "/") {
			return 0, nil, nil, badRequest("invalid_cursor", "cursor is not one this API returned")
		}
		after = string(b)
	}
	items := []jobSummary{}
	next, lastEntry := "", ""
	var ferr error
	err := h.jobs.ListIndex(ctx, kind, after, func(entry, id string) bool {
		if len(items) == limit {
			next = base64.RawURLEncoding.EncodeToString([]byte(lastEntry))
			return false
		}
		job, err := h.jobs.ReadJob(ctx, id)
		if errors.Is(err, blob.ErrNotExist) {
			return true
		}
		if err != nil {
			ferr = err
			return false
		}
		items = append(items, jobSummary{ID: job.ID, Kind: job.Kind, State: job.State, Trigger: job.Trigger, RequestedBy: job.RequestedBy,
			CreatedAt: job.CreatedAt, UpdatedAt: job.UpdatedAt, Tasks: job.Tasks, Archive: job.Archive, Snapshot: job.Snapshot, Failed: len(job.Errors)})
		lastEntry = entry
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return 0, nil, nil, err
	}
	out := map[string]any{"items": items}
	if next != "" {
		out["nextCursor"] = next
	}
	return http.StatusOK, out, nil, nil
}
