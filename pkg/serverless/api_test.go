package serverless

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

var apiNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// apiFixture is the api over a directory store, with an invoker that
// records the start requests it is handed.
type apiFixture struct {
	api    *API
	store  *fs.Store
	jobs   *pipeline.Jobs
	logs   bytes.Buffer
	mu     sync.Mutex
	starts []events.StartRequest
}

func newAPIFixture(t *testing.T, allowSecrets bool) *apiFixture {
	t.Helper()
	f := &apiFixture{}
	var err error
	if f.store, err = fs.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if f.jobs, err = pipeline.NewJobs(f.store, DefaultStagingPrefix, DefaultArchivePrefix, apiNow); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(lambdaenv.API)
	cfg.Bucket, cfg.SchedulerFunction, cfg.APIAllowSecrets = "b", "scheduler", allowSecrets
	inv := InvokerFunc(func(_ context.Context, req events.StartRequest) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.starts = append(f.starts, req)
		return nil
	})
	if f.api, err = NewAPI(cfg, Runtime{Now: apiNow, Logs: &f.logs}, Deps{Store: f.store, Invoker: inv}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Put(context.Background(), "backups/edgebase-backup-2026-01-02T03-04-05.tar.gz", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	return f
}

const operator = "arn:aws:sts::123456789012:assumed-role/EdgeVault-ApiOperatorRole/alice"

// post sends a POST as API Gateway does with IAM authorization.
func (f *apiFixture) post(t *testing.T, path, body, idem, caller string) (int, map[string]any) {
	t.Helper()
	req := awsevents.APIGatewayProxyRequest{HTTPMethod: "POST", Path: path, Body: body, Headers: map[string]string{"Content-Type": "application/json"}}
	if idem != "" {
		req.Headers["Idempotency-Key"] = idem
	}
	req.RequestContext.Identity.UserArn = caller
	req.RequestContext.Identity.Caller = "AROAEXAMPLE:alice"
	resp, err := f.api.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func code(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestAPISecretsNeedTheStackSetting(t *testing.T) {
	f := newAPIFixture(t, false)
	const archive = `"archive":"edgebase-backup-2026-01-02T03-04-05.tar.gz","confirm":true`
	for _, c := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/backups", `{"includeSecrets":true}`, 403, "secrets_not_allowed"},
		{"/backups", `{"includeStorage":true}`, 202, ""},
		{"/restores", `{` + archive + `}`, 403, "secrets_not_allowed"},
		{"/restores", `{` + archive + `,"only":["db:shared","secrets"]}`, 403, "secrets_not_allowed"},
		{"/restores", `{` + archive + `,"skipSecrets":true,"fullStorage":true}`, 202, ""},
		{"/restores", `{` + archive + `,"only":["db:shared,storage"]}`, 202, ""},
	} {
		status, body := f.post(t, c.path, c.body, "", operator)
		if status != c.status || code(body) != c.code {
			t.Errorf("%s %s: %d %v, want %d %s", c.path, c.body, status, body, c.status, c.code)
		}
	}
	if len(f.starts) != 3 {
		t.Fatalf("%d starts, want 3", len(f.starts))
	}
	if o := f.starts[1].Options; !o.SkipSecrets || !o.FullStorage {
		t.Errorf("restore options %+v: skipSecrets and fullStorage not passed on", o)
	}
	allowed := newAPIFixture(t, true)
	if status, body := allowed.post(t, "/backups", `{"includeSecrets":true}`, "", operator); status != 202 {
		t.Fatalf("with apiAllowSecrets: %d %v", status, body)
	}
	if status, body := allowed.post(t, "/restores", `{`+archive+`}`, "", operator); status != 202 {
		t.Fatalf("restore with apiAllowSecrets: %d %v", status, body)
	}
}

// The same Idempotency-Key with the same request gives the same job;
// with another request it is refused instead of answering with a job
// that does something else.
func TestAPIIdempotencyKey(t *testing.T) {
	f := newAPIFixture(t, false)
	status, first := f.post(t, "/backups", `{"includeStorage":true}`, "nightly-1", operator)
	if status != 202 {
		t.Fatalf("first: %d %v", status, first)
	}
	id := first["id"].(string)
	// The same request (formatted otherwise) again: the same job, started
	// again (the scheduler finds it).
	if status, again := f.post(t, "/backups", ` { "includeStorage" : true , "includeSecrets": false }`, "nightly-1", operator); status != 202 || again["id"] != id {
		t.Fatalf("retry: %d %v", status, again)
	}
	status, body := f.post(t, "/backups", `{"includeStorage":false}`, "nightly-1", operator)
	if status != 409 || code(body) != "idempotency_key_reused" || body["error"].(map[string]any)["job"] != id {
		t.Fatalf("reused key: %d %v", status, body)
	}
	if len(f.starts) != 2 || f.starts[0].JobID != id || f.starts[1].JobID != id {
		t.Fatalf("starts %+v", f.starts)
	}
	// Keys belong to their caller.
	if status, other := f.post(t, "/backups", `{"includeStorage":false}`, "nightly-1", "arn:aws:iam::123456789012:user/bob"); status != 202 || other["id"] == id {
		t.Fatalf("another caller's key: %d %v", status, other)
	}
	// A key whose record is gone is still bound by its job's record.
	if err := f.jobs.CreateJob(context.Background(), &events.Job{ID: f.starts[0].JobID, Kind: events.KindBackup, State: events.StateDone,
		Options: events.Options{IncludeStorage: true}, CreatedAt: apiNow()}); err != nil {
		t.Fatal(err)
	}
	var recs []string
	_ = f.store.List(context.Background(), "jobs/idempotency/", func(i blob.Info) error { recs = append(recs, i.Key); return nil })
	if len(recs) != 2 {
		t.Fatalf("idempotency records %v", recs)
	}
	for _, k := range recs {
		_ = f.store.Delete(context.Background(), k)
	}
	if status, body := f.post(t, "/backups", `{}`, "nightly-1", operator); status != 409 || code(body) != "idempotency_key_reused" {
		t.Fatalf("reused key without its record: %d %v", status, body)
	}
	if status, body := f.post(t, "/backups", `{"includeStorage":true}`, "nightly-1", operator); status != 202 || body["id"] != id {
		t.Fatalf("same request without its record: %d %v", status, body)
	}
}

// A start the target's lock would refuse is answered 409 naming the job;
// the caller is handed to the scheduler and logged.
func TestAPITargetBusyAndCaller(t *testing.T) {
	ctx := context.Background()
	f := newAPIFixture(t, false)
	restore := &events.Job{ID: "restore-1", Kind: events.KindRestore, State: events.StateRunning, Target: "https://eb.example", CreatedAt: apiNow()}
	if err := f.jobs.CreateJob(ctx, restore); err != nil {
		t.Fatal(err)
	}
	if err := f.jobs.AcquireTarget(ctx, restore); err != nil {
		t.Fatal(err)
	}
	status, body := f.post(t, "/backups", `{}`, "", operator)
	if status != 409 || code(body) != "target_busy" || body["error"].(map[string]any)["job"] != "restore-1" ||
		!strings.Contains(body["error"].(map[string]any)["message"].(string), "restore job restore-1 is running") {
		t.Fatalf("backup during a restore: %d %v", status, body)
	}
	if status, body := f.post(t, "/backups", `{}`, "k", operator); status != 409 || code(body) != "target_busy" {
		t.Fatalf("keyed backup during a restore: %d %v", status, body)
	}
	if _, err := f.jobs.Update(ctx, "restore-1", func(j *events.Job) error { j.State = events.StateDone; return nil }); err != nil {
		t.Fatal(err)
	}
	// A backup runs: backups may start beside it, restores may not.
	backup := &events.Job{ID: "backup-1", Kind: events.KindBackup, State: events.StateRunning, Target: "https://eb.example", CreatedAt: apiNow()}
	if err := f.jobs.CreateJob(ctx, backup); err != nil {
		t.Fatal(err)
	}
	if err := f.jobs.AcquireTarget(ctx, backup); err != nil {
		t.Fatal(err)
	}
	if status, body := f.post(t, "/backups", `{}`, "", operator); status != 202 {
		t.Fatalf("backup beside a backup: %d %v", status, body)
	}
	status, body = f.post(t, "/restores", `{"archive":"edgebase-backup-2026-01-02T03-04-05.tar.gz","confirm":true,"skipSecrets":true}`, "", operator)
	if status != 409 || body["error"].(map[string]any)["job"] != "backup-1" {
		t.Fatalf("restore beside a backup: %d %v", status, body)
	}
	if len(f.starts) != 1 || f.starts[0].RequestedBy != operator {
		t.Fatalf("starts %+v", f.starts)
	}
	if !strings.Contains(f.logs.String(), `"caller":"`+operator+`"`) {
		t.Fatalf("the access log does not name the caller:\n%s", f.logs.String())
	}
	// Without IAM's user ARN, the caller id.
	if got := callerOf(awsevents.APIGatewayProxyRequest{RequestContext: awsevents.APIGatewayProxyRequestContext{
		Identity: awsevents.APIGatewayRequestIdentity{Caller: "AROAEXAMPLE:bob"}}}); got != "AROAEXAMPLE:bob" {
		t.Fatalf("caller %q", got)
	}
}
