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
	"github.com/edgevault/edgevault/internal/metrics"
	"github.com/edgevault/edgevault/pkg/blob"
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
// function plans it asynchronously, and GET shows it within seconds. An
// Idempotency-Key header makes a retried POST return the same job.
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
	log = log.With("method", req.HTTPMethod, "path", req.Path)
	status, body, headers, err := h.route(ctx, log, req)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			log.Error("request failed", "err", err)
			ae = &apiError{status: http.StatusInternalServerError, code: "internal_error", message: "the request failed; see the function's log (request " + reqID + ")"}
		}
		status = ae.status
		body = map[string]any{"error": map[string]any{"code": ae.code, "message": ae.message, "requestId": reqID}}
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
	sr := events.StartRequest{Kind: kind, Trigger: events.TriggerAPI}
	if kind == events.KindBackup {
		var in backupRequest
		if err := decodeBody(req, &in); err != nil {
			return 0, nil, nil, err
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
		if _, err := h.store.Stat(ctx, key); errors.Is(err, blob.ErrNotExist) {
			return 0, nil, nil, &apiError{status: http.StatusUnprocessableEntity, code: "archive_not_found", message: fmt.Sprintf("archive %s does not exist", key)}
		} else if err != nil {
			return 0, nil, nil, err
		}
		sr.Options = events.Options{Archive: key, SkipStorage: in.SkipStorage, SkipSecrets: in.SkipSecrets, Only: in.Only, AllowSchemaDrift: in.AllowSchemaDrift}
	}
	idem := header(req, "Idempotency-Key")
	if len(idem) > 200 {
		return 0, nil, nil, badRequest("invalid_idempotency_key", "the Idempotency-Key header is longer than 200 characters")
	}
	sr.JobID = newJobID(kind, h.now(), idem)
	if err := h.invoker.Start(ctx, sr); err != nil {
		log.Error("could not invoke the scheduler", "err", err)
		return 0, nil, nil, &apiError{status: http.StatusServiceUnavailable, code: "start_failed", message: "the job could not be handed to the scheduler; try again"}
	}
	log.Info("job accepted", "job", sr.JobID, "kind", kind)
	self := "/" + string(kind) + "s/" + sr.JobID
	return http.StatusAccepted, map[string]any{"id": sr.JobID, "kind": kind, "state": "accepted", "options": sr.Options,
		"links": map[string]string{"self": self}}, map[string]string{"Location": self}, nil
}

// jobSummary is one item of a listing.
type jobSummary struct {
	ID        string          `json:"id"`
	Kind      events.JobKind  `json:"kind"`
	State     events.JobState `json:"state"`
	Trigger   events.Trigger  `json:"trigger"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Tasks     int             `json:"unitsTotal"`
	Archive   string          `json:"archive,omitempty"`
	Failed    int             `json:"errors,omitempty"`
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
		items = append(items, jobSummary{ID: job.ID, Kind: job.Kind, State: job.State, Trigger: job.Trigger,
			CreatedAt: job.CreatedAt, UpdatedAt: job.UpdatedAt, Tasks: job.Tasks, Archive: job.Archive, Failed: len(job.Errors)})
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
