package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/awsconfig"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/internal/motoserver"
	"github.com/edgevault/edgevault/pkg/blob"
	s3store "github.com/edgevault/edgevault/pkg/blob/s3"
	"github.com/edgevault/edgevault/pkg/cloudflare/cloudflaretest"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/serverless"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// gate skips unless the e2e suite was asked for. Under CI a missing
// moto_server fails the test (motoserver.Start).
func gate(t *testing.T) {
	t.Helper()
	if os.Getenv("EDGEVAULT_E2E") != "1" && os.Getenv("EDGEVAULT_SLOW") != "1" {
		t.Skip("end-to-end suite: set EDGEVAULT_E2E=1 (make e2e) or EDGEVAULT_SLOW=1 (make test)")
	}
}

// fixedNow is the clock of every emulator and, unless a test gives
// another, of every handler: archives of two runs over the same data are
// then byte-identical.
var fixedNow = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// advancingNow is a clock that starts at fixedNow and advances in real
// time: leases expire, and a job's start time differs from its
// assembly's.
func advancingNow() func() time.Time {
	start := time.Now()
	return func() time.Time { return fixedNow().Add(time.Since(start)) }
}

// syncBuffer collects log and metric lines from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// target is an EdgeBase deployment: the emulator, and the Cloudflare
// emulator listing its DatabaseDOs (Edge mode).
type target struct {
	emu *edgebasetest.Emulator
	cf  *cloudflaretest.Server
}

func newTarget(t *testing.T, seed bool) *target {
	t.Helper()
	ctx := context.Background()
	emu := edgebasetest.NewTest(t, edgebasetest.Options{Now: fixedNow, EvictAfter: -1})
	if seed {
		if _, err := emu.SeedDemo(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cf := cloudflaretest.NewServer(cloudflaretest.Config{})
	t.Cleanup(cf.Close)
	tg := &target{emu: emu, cf: cf}
	tg.syncDOs(t)
	return tg
}

// syncDOs registers the emulator's DatabaseDOs with the Cloudflare
// emulator, as Cloudflare would list them.
func (tg *target) syncDOs(t *testing.T) {
	t.Helper()
	insts, err := tg.emu.DOInstances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ns := tg.cf.AddNamespace(cloudflaretest.Namespace{Name: "edgebase_DatabaseDO", Script: "edgebase", Class: "DatabaseDO", UseSQLite: true})
	var objs []cloudflaretest.Object
	for _, in := range insts {
		objs = append(objs, cloudflaretest.Object{ID: in.HexID, HasStoredData: in.HasData})
	}
	if err := tg.cf.AddObjects(ns.ID, objs...); err != nil {
		t.Fatal(err)
	}
}

// fingerprint reads the target's data (which also wakes its DOs, so
// list-dos can name them).
func (tg *target) fingerprint(t *testing.T) *edgebasetest.Fingerprint {
	t.Helper()
	fp, err := edgebasetest.TakeFingerprint(context.Background(), tg.emu.URL(),
		edgebasetest.FingerprintOptions{ServiceKey: tg.emu.ServiceKey(), Instances: edgebasetest.DemoInstances})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// deployment is the functions of one stack against one target.
type deployment struct {
	t       *testing.T
	clients *awsconfig.Clients
	stack   *Stack
	target  *target
	logs    *syncBuffer
	metrics *syncBuffer

	scheduler *serverless.Scheduler
	worker    *serverless.Worker
	assembler *serverless.Assembler
	api       *serverless.API

	workerPoller, controlPoller *Poller
	// concurrency is how many invocations of each poller run at once
	// (Lambda's concurrent batches of one event source); default 1.
	concurrency int
}

type deployOptions struct {
	stack    StackOptions
	tune     func(fn string, c *serverless.Config)
	override map[string]string // environment overrides (another target, secret)
	// now is every handler's clock (default fixedNow).
	now func() time.Time
}

func deploy(t *testing.T, tg *target, o deployOptions) *deployment {
	t.Helper()
	ctx := context.Background()
	clients := motoserver.Clients(t)
	so := o.stack
	if so.Name == "" {
		so.Name = motoserver.Name(t, "ev")
	}
	so.EdgeBaseURL = tg.emu.URL()
	so.ServiceKey = tg.emu.ServiceKey()
	so.CloudflareAccount = tg.cf.AccountID()
	so.CloudflareToken = cloudflaretest.DefaultToken
	stack, err := SetupStack(ctx, clients, so)
	if err != nil {
		t.Fatal(err)
	}
	return deployOn(t, stack, tg, o)
}

// deployOn builds the handlers on an existing stack.
func deployOn(t *testing.T, stack *Stack, tg *target, o deployOptions) *deployment {
	t.Helper()
	ctx := context.Background()
	d := &deployment{t: t, clients: motoserver.Clients(t), stack: stack, target: tg, logs: &syncBuffer{}, metrics: &syncBuffer{}}
	now := o.now
	if now == nil {
		now = fixedNow
	}
	rt := serverless.Runtime{Now: now, Logs: d.logs, Metrics: d.metrics}
	extra := map[string]string{lambdaenv.EdgeBaseURL: tg.emu.URL(), lambdaenv.CloudflareAPIURL: tg.cf.URL(), lambdaenv.CloudflareAccount: tg.cf.AccountID()}
	for k, v := range o.override {
		extra[k] = v
	}
	cfg := func(fn string) serverless.Config {
		c, err := stack.Config(fn, extra)
		if err != nil {
			t.Fatal(err)
		}
		c.AWS = motoserver.Config(t)
		c.RecheckDelay = time.Second
		c.RetryDelay = 500 * time.Millisecond
		c.LogLevel = -4 // debug: the tests read the logs
		if o.tune != nil {
			o.tune(fn, &c)
		}
		return c
	}
	// Each function connects its AWS dependencies as its main does.
	deps := func(fn string) (serverless.Config, serverless.Deps) {
		c, d, err := serverless.AWSDeps(ctx, cfg(fn))
		if err != nil {
			t.Fatal(err)
		}
		return c, d
	}
	var err error
	if c, dd := deps(lambdaenv.Scheduler); true {
		if d.scheduler, err = serverless.NewScheduler(c, rt, dd); err != nil {
			t.Fatal(err)
		}
	}
	if c, dd := deps(lambdaenv.Worker); true {
		if d.worker, err = serverless.NewWorker(c, rt, dd); err != nil {
			t.Fatal(err)
		}
	}
	if c, dd := deps(lambdaenv.Assembler); true {
		if d.assembler, err = serverless.NewAssembler(c, rt, dd); err != nil {
			t.Fatal(err)
		}
	}
	// The api hands starts to the scheduler as Lambda's asynchronous
	// invoke would: later, in the background, with its own request id
	// (kept across retries), retried on error.
	async := serverless.InvokerFunc(func(_ context.Context, req events.StartRequest) error {
		payload, err := json.Marshal(req)
		if err != nil {
			return err
		}
		go func() {
			ictx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
			for range 3 {
				if _, err := d.scheduler.Handle(ictx, payload); err == nil {
					return
				}
			}
		}()
		return nil
	})
	apiCfg, apiDeps := deps(lambdaenv.API)
	apiDeps.Invoker = async
	if d.api, err = serverless.NewAPI(apiCfg, rt, apiDeps); err != nil {
		t.Fatal(err)
	}
	sq := d.clients.SQS()
	d.workerPoller = &Poller{Client: sq, QueueURL: stack.TaskQueueURL, BatchSize: 5, Timeout: 60 * time.Second, Handler: d.worker.Handle}
	d.controlPoller = &Poller{Client: sq, QueueURL: stack.ControlQueueURL, BatchSize: 1, Timeout: 60 * time.Second, Handler: d.assembler.Handle}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("function logs (tail):\n%s", tail(d.logs.String(), 60))
		}
	})
	return d
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// run starts both pollers until the returned stop is called.
func (d *deployment) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range []*Poller{d.workerPoller, d.controlPoller} {
		for range max(d.concurrency, 1) {
			wg.Go(func() {
				if err := p.Run(ctx); err != nil {
					d.t.Errorf("poller: %v", err)
				}
			})
		}
	}
	return func() { cancel(); wg.Wait() }
}

// schedule invokes the scheduler the way an EventBridge rule with constant
// input does (asynchronously: Lambda assigns a request id).
func (d *deployment) schedule(payload string, requestID string) serverless.StartResult {
	d.t.Helper()
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: requestID})
	res, err := d.scheduler.Handle(ctx, json.RawMessage(payload))
	if err != nil {
		d.t.Fatalf("scheduler: %v", err)
	}
	return res
}

// apiCaller is the IAM principal of every API request (API Gateway's IAM
// authorization puts it in requestContext.identity).
const apiCaller = "arn:aws:sts::123456789012:assumed-role/EdgeVault-ApiOperatorRole/e2e"

// call sends one API Gateway proxy request to the api function.
func (d *deployment) call(method, path, body string, query map[string]string) (int, map[string]any) {
	d.t.Helper()
	req := awsevents.APIGatewayProxyRequest{HTTPMethod: method, Path: path, Resource: "/{proxy+}", Body: body,
		QueryStringParameters: query, Headers: map[string]string{"Content-Type": "application/json"}}
	req.RequestContext.RequestID = NewRequestID()
	req.RequestContext.Identity.UserArn = apiCaller
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
	resp, err := d.api.Handle(ctx, req)
	if err != nil {
		d.t.Fatalf("api %s %s: %v", method, path, err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
		d.t.Fatalf("api %s %s: body %q: %v", method, path, resp.Body, err)
	}
	return resp.StatusCode, out
}

// wait polls GET /<kind>s/<id> until the job is done or failed.
func (d *deployment) wait(kind events.JobKind, id string, timeout time.Duration) map[string]any {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		status, body := d.call("GET", "/"+string(kind)+"s/"+id, "", nil)
		if status == 200 {
			if s := body["state"]; s == string(events.StateDone) || s == string(events.StateFailed) {
				return body
			}
		} else if status != 404 {
			d.t.Fatalf("GET %s: %d %v", id, status, body)
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("job %s not finished after %s: %d %v", id, timeout, status, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// archiveBytes reads an object of the backup bucket.
func (d *deployment) object(key string) []byte {
	d.t.Helper()
	rc, err := d.store().Get(context.Background(), key)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func (d *deployment) store() pipeline.BlobStore {
	s, err := s3store.New(d.clients.S3(), d.stack.Bucket, "", s3store.Options{})
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

func (d *deployment) jobs() *pipeline.Jobs {
	j, err := pipeline.NewJobs(d.store(), "jobs/", "backups/", fixedNow)
	if err != nil {
		d.t.Fatal(err)
	}
	return j
}

// drain waits until both queues are empty (nothing visible or in flight).
func (d *deployment) drain(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n := 0
		for _, u := range []string{d.stack.TaskQueueURL, d.stack.ControlQueueURL} {
			v, f, err := QueueDepth(context.Background(), d.clients.SQS(), u)
			if err != nil {
				d.t.Fatal(err)
			}
			n += v + f
		}
		if n == 0 {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	d.t.Fatalf("queues not drained after %s", timeout)
}

// receiveAll takes every visible message of a queue (for DLQ checks).
func receiveAll(t *testing.T, c *sqs.Client, url string) []sqstypes.Message {
	t.Helper()
	var all []sqstypes.Message
	for {
		out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return all
		}
		all = append(all, out.Messages...)
	}
}

type blobInfo = blob.Info

func secretsInput(name string) *secretsmanager.CreateSecretInput {
	return &secretsmanager.CreateSecretInput{Name: aws.String(name)}
}

// callWithHeader is call with extra request headers.
func (d *deployment) callWithHeader(method, path, body string, headers map[string]string) (int, map[string]any) {
	d.t.Helper()
	req := awsevents.APIGatewayProxyRequest{HTTPMethod: method, Path: path, Resource: "/{proxy+}", Body: body,
		Headers: map[string]string{"Content-Type": "application/json"}}
	for k, v := range headers {
		req.Headers[k] = v
	}
	req.RequestContext.Identity.UserArn = apiCaller
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
	resp, err := d.api.Handle(ctx, req)
	if err != nil {
		d.t.Fatalf("api %s %s: %v", method, path, err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &out); err != nil {
		d.t.Fatalf("api %s %s: body %q: %v", method, path, resp.Body, err)
	}
	return resp.StatusCode, out
}
