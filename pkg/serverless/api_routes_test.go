package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// routesBed is the api function over a directory store, with an invoker
// that records the start requests it is handed.
type routesBed struct {
	clock *testClock
	store *blobtest.Faulty
	jobs  *pipeline.Jobs
	api   *API

	mu      sync.Mutex
	started []events.StartRequest
}

func newRoutesBed(t *testing.T) *routesBed {
	t.Helper()
	rb := &routesBed{clock: &testClock{start: time.Now()}}
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rb.store = blobtest.NewFaulty(store, true)
	if rb.jobs, err = pipeline.NewJobs(rb.store, DefaultStagingPrefix, DefaultArchivePrefix, rb.clock.Now); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(lambdaenv.API)
	cfg.Bucket, cfg.SchedulerFunction = "bucket", "scheduler"
	invoker := InvokerFunc(func(_ context.Context, req events.StartRequest) error {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		rb.started = append(rb.started, req)
		return nil
	})
	if rb.api, err = NewAPI(cfg, Runtime{Now: rb.clock.Now}, Deps{Store: rb.store, Invoker: invoker}); err != nil {
		t.Fatal(err)
	}
	return rb
}

type apiResponse struct {
	status  int
	headers map[string]string
	body    map[string]any
}

// errorCode is the code of an error response.
func (r apiResponse) errorCode() string {
	e, _ := r.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (rb *routesBed) call(ctx context.Context, t *testing.T, method, path string, query map[string]string, body string) apiResponse {
	t.Helper()
	resp, err := rb.api.Handle(ctx, awsevents.APIGatewayProxyRequest{HTTPMethod: method, Path: path, QueryStringParameters: query, Body: body,
		Headers: map[string]string{"Content-Type": "application/json"}})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	out := apiResponse{status: resp.StatusCode, headers: resp.Headers}
	if err := json.Unmarshal([]byte(resp.Body), &out.body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, resp.Body, err)
	}
	if resp.Headers["Content-Type"] != "application/json" {
		t.Fatalf("%s %s: content type %q", method, path, resp.Headers["Content-Type"])
	}
	return out
}

// TestAPIStart: POST /backups hands the request to the scheduler and
// answers 202 with the job's location.
func TestAPIStart(t *testing.T) {
	ctx := testContext(t)
	rb := newRoutesBed(t)
	r := rb.call(ctx, t, http.MethodPost, "/backups", nil, `{"includeStorage":true}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d %v", r.status, r.body)
	}
	id, _ := r.body["id"].(string)
	if len(rb.started) != 1 || rb.started[0].JobID != id || !pipeline.ValidJobID(id) {
		t.Fatalf("started %+v, answered id %q", rb.started, id)
	}
	if req := rb.started[0]; req.Kind != events.KindBackup || req.Trigger != events.TriggerAPI || !req.Options.IncludeStorage {
		t.Fatalf("start request %+v", req)
	}
	if loc := r.headers["Location"]; loc != "/backups/"+id {
		t.Fatalf("Location %q", loc)
	}
	// Nothing is stored by the api itself: the scheduler creates the job.
	if st := rb.call(ctx, t, http.MethodGet, "/backups/"+id, nil, ""); st.status != http.StatusNotFound {
		t.Fatalf("GET before the scheduler ran: %d", st.status)
	}
}

// TestAPIGetCountsByListing: a running job's unit counts come from
// listing its outcomes; only failures and retries are read, never the
// outcome of a finished task.
func TestAPIGetCountsByListing(t *testing.T) {
	ctx := testContext(t)
	rb := newRoutesBed(t)
	const kind events.TaskKind = "unit-test"
	w := &pipeline.Worker{Jobs: rb.jobs, MaxAttempts: 3, Handlers: map[events.TaskKind]pipeline.Handler{
		kind: func(_ context.Context, u pipeline.Unit) (pipeline.Result, error) {
			switch u.Task.Unit {
			case "unit-4":
				return pipeline.Result{}, pipeline.Permanent(errors.New("refused"))
			case "unit-5":
				return pipeline.Result{}, errors.New("timed out")
			}
			return pipeline.Result{Rows: 1}, nil
		}}}
	job := &events.Job{ID: "b1", Kind: events.KindBackup, State: events.StateRunning, PhaseTasks: []int{6}, Tasks: 6, CreatedAt: rb.clock.Now()}
	if err := rb.jobs.CreateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	var doneKeys []string
	for i := 1; i <= 5; i++ {
		tk := events.Task{Job: "b1", ID: pipeline.TaskID(i, kind), Kind: kind, Unit: fmt.Sprintf("unit-%d", i)}
		_ = w.Process(ctx, tk, 1)
		if i <= 3 {
			doneKeys = append(doneKeys, tk.ID+".json")
		}
	}
	before := len(rb.store.Calls())
	r := rb.call(ctx, t, http.MethodGet, "/backups/b1", nil, "")
	if r.status != http.StatusOK || r.body["state"] != "running" {
		t.Fatalf("GET: %d %v", r.status, r.body)
	}
	units, _ := r.body["units"].(map[string]any)
	want := map[string]any{"total": 6.0, "done": 3.0, "failed": 1.0, "retrying": 1.0, "pending": 1.0}
	for k, v := range want {
		if units[k] != v {
			t.Fatalf("units %v, want %v", units, want)
		}
	}
	if errs, _ := r.body["errors"].([]any); len(errs) != 1 || errs[0].(map[string]any)["unit"] != "unit-4" {
		t.Fatalf("errors %v", r.body["errors"])
	}
	if retrying, _ := r.body["retrying"].([]any); len(retrying) != 1 || retrying[0].(map[string]any)["unit"] != "unit-5" {
		t.Fatalf("retrying %v", r.body["retrying"])
	}
	listed := false
	for _, c := range rb.store.Calls()[before:] {
		if c.Op == blobtest.OpList && strings.HasSuffix(c.Key, "b1/done/000/") {
			listed = true
		}
		if (c.Op == blobtest.OpGet || c.Op == blobtest.OpReadVersion) && slices.ContainsFunc(doneKeys, func(k string) bool { return strings.HasSuffix(c.Key, k) }) {
			t.Fatalf("GET read the outcome %s", c.Key)
		}
	}
	if !listed {
		t.Fatal("GET did not list the outcomes")
	}
	// A restore's id is not a backup.
	if r := rb.call(ctx, t, http.MethodGet, "/restores/b1", nil, ""); r.status != http.StatusNotFound || r.errorCode() != "not_found" {
		t.Fatalf("GET /restores/<backup>: %d %v", r.status, r.body)
	}
}

// TestAPIListPages: GET /backups lists newest first, a page at a time.
func TestAPIListPages(t *testing.T) {
	ctx := testContext(t)
	rb := newRoutesBed(t)
	for i, id := range []string{"b-old", "b-mid", "b-new"} {
		job := &events.Job{ID: id, Kind: events.KindBackup, State: events.StateDone, CreatedAt: testEpoch.Add(time.Duration(i) * time.Hour)}
		if err := rb.jobs.CreateJob(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	if err := rb.jobs.CreateJob(ctx, &events.Job{ID: "r1", Kind: events.KindRestore, State: events.StateRunning, CreatedAt: testEpoch.Add(9 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	page := func(query map[string]string) ([]string, string) {
		r := rb.call(ctx, t, http.MethodGet, "/backups", query, "")
		if r.status != http.StatusOK {
			t.Fatalf("list %v: %d %v", query, r.status, r.body)
		}
		var ids []string
		for _, it := range r.body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, _ := r.body["nextCursor"].(string)
		return ids, next
	}
	ids, next := page(map[string]string{"limit": "2"})
	if !slices.Equal(ids, []string{"b-new", "b-mid"}) || next == "" {
		t.Fatalf("first page %v, cursor %q", ids, next)
	}
	ids, next = page(map[string]string{"limit": "2", "cursor": next})
	if !slices.Equal(ids, []string{"b-old"}) || next != "" {
		t.Fatalf("second page %v, cursor %q", ids, next)
	}
	if ids, _ := page(nil); len(ids) != 3 {
		t.Fatalf("default page %v", ids)
	}
}

// TestAPIErrors: unknown resources and jobs are 404, wrong methods 405
// with Allow, malformed parameters and bodies 400, all in the error
// shape.
func TestAPIErrors(t *testing.T) {
	ctx := testContext(t)
	rb := newRoutesBed(t)
	for _, c := range []struct {
		method, path string
		query        map[string]string
		body         string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/nothing", nil, "", 404, "not_found", ""},
		{http.MethodGet, "/backups/no-such-job", nil, "", 404, "not_found", ""},
		{http.MethodGet, "/backups/index", nil, "", 404, "not_found", ""},
		{http.MethodGet, "/backups/a/b", nil, "", 404, "not_found", ""},
		{http.MethodDelete, "/backups", nil, "", 405, "method_not_allowed", "GET, POST"},
		{http.MethodPut, "/restores/r1", nil, "", 405, "method_not_allowed", "GET"},
		{http.MethodGet, "/backups", map[string]string{"limit": "0"}, "", 400, "invalid_limit", ""},
		{http.MethodGet, "/backups", map[string]string{"limit": "many"}, "", 400, "invalid_limit", ""},
		{http.MethodGet, "/backups", map[string]string{"limit": fmt.Sprint(MaxListLimit + 1)}, "", 400, "invalid_limit", ""},
		{http.MethodGet, "/backups", map[string]string{"cursor": "!!"}, "", 400, "invalid_cursor", ""},
		{http.MethodPost, "/backups", nil, `{"includeStorage":`, 400, "invalid_body", ""},
		{http.MethodPost, "/backups", nil, `{"wipeEverything":true}`, 400, "invalid_body", ""},
	} {
		r := rb.call(ctx, t, c.method, c.path, c.query, c.body)
		if r.status != c.status || r.errorCode() != c.code || r.headers["Allow"] != c.allow {
			t.Errorf("%s %s %v: %d %v (Allow %q); want %d %s", c.method, c.path, c.query, r.status, r.body, r.headers["Allow"], c.status, c.code)
		}
	}
	if len(rb.started) != 0 {
		t.Fatalf("a refused request started a job: %+v", rb.started)
	}
}
