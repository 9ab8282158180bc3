package serverless

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/sensitive"
	"github.com/edgevault/edgevault/pkg/serverless/lambdatest"
)

// testEpoch is where the handlers' clock starts.
var testEpoch = time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)

// testClock runs in real time from testEpoch and can be moved forward:
// queue delays and job timeouts pass when a test says so.
type testClock struct {
	mu    sync.Mutex
	start time.Time
	skip  time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return testEpoch.Add(time.Since(c.start) + c.skip)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skip += d
}

// lockedBuffer collects what concurrent handlers write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON lines written so far that carry key.
func (b *lockedBuffer) lines(t *testing.T, key string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %s", sc.Bytes())
		}
		if _, ok := m[key]; ok {
			out = append(out, m)
		}
	}
	return out
}

// testbed is the serverless stack in-process: a directory "bucket"
// (wrapped in a fault injector), in-memory task and control queues (the
// task queue too), an EdgeBase emulator, and the functions built from
// them as main builds them from AWS.
type testbed struct {
	clock          *testClock
	dir            string
	fs             *fs.Store
	store          *blobtest.Faulty
	jobs           *pipeline.Jobs
	tasks, control *mem.Queue
	taskQ          *queuetest.Faulty
	emu            *edgebasetest.Emulator
	client         *edgebase.Client
	enum           *discovery.Enumerator
	metrics, logs  *lockedBuffer
}

func newTestbed(t *testing.T) *testbed {
	t.Helper()
	tb := &testbed{clock: &testClock{start: time.Now()}, dir: t.TempDir(), metrics: &lockedBuffer{}, logs: &lockedBuffer{}}
	var err error
	if tb.fs, err = fs.New(tb.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.fs.Close() })
	tb.store = blobtest.NewFaulty(tb.fs, true)
	if tb.jobs, err = pipeline.NewJobs(tb.store, DefaultStagingPrefix, DefaultArchivePrefix, tb.clock.Now); err != nil {
		t.Fatal(err)
	}
	tb.tasks = mem.New(mem.Options{VisibilityTimeout: 15 * time.Minute, Now: tb.clock.Now})
	tb.taskQ = queuetest.NewFaulty(tb.tasks, 1)
	tb.control = mem.New(mem.Options{VisibilityTimeout: 15 * time.Minute, Now: tb.clock.Now})
	tb.emu = edgebasetest.NewTest(t, edgebasetest.Options{StateDir: t.TempDir()})
	tb.seed(t)
	hc := &http.Client{Transport: edgebase.DefaultTransport()}
	t.Cleanup(hc.CloseIdleConnections)
	tb.client, err = edgebase.New(edgebase.Options{BaseURL: tb.emu.URL(), ServiceKey: sensitive.String(tb.emu.ServiceKey()), HTTPClient: hc,
		Retry: edgebase.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	tb.enum = &discovery.Enumerator{Client: tb.client, StateDir: tb.emu.StateDir()}
	return tb
}

// seed gives the emulator a little of everything a backup reads: users,
// rows in the D1 namespace and in a DO, a few objects.
func (tb *testbed) seed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := tb.emu.AddUsers(ctx, edgebasetest.NumberedUsers(3)...); err != nil {
		t.Fatal(err)
	}
	if err := tb.emu.AddRows(ctx, "shared", "posts", edgebasetest.Row{"id": "p1", "title": "one"}, edgebasetest.Row{"id": "p2", "title": "two"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.emu.AddRows(ctx, "ledger", "entries", edgebasetest.Row{"id": "e1", "amount": 1.5, "memo": "m"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.emu.AddObjects(ctx, edgebasetest.DemoObjects()[:5]...); err != nil {
		t.Fatal(err)
	}
}

// config is fn's configuration for the testbed (the queue URLs and the
// secret id are placeholders: the dependencies are passed in).
func (tb *testbed) config(fn string) Config {
	c := DefaultConfig(fn)
	c.Bucket, c.TaskQueueURL, c.ControlQueueURL = "bucket", "mem://tasks", "mem://control"
	c.EdgeBaseURL, c.ServiceKeySecret, c.SchedulerFunction = tb.emu.URL(), "service-key", "scheduler"
	c.RecheckDelay = time.Second
	return c
}

func (tb *testbed) runtime() Runtime {
	return Runtime{Now: tb.clock.Now, Logs: tb.logs, Metrics: tb.metrics}
}

func (tb *testbed) deps() Deps {
	return Deps{Store: tb.store, Tasks: tb.taskQ, Control: tb.control, EdgeBase: tb.client, Enum: tb.enum}
}

func (tb *testbed) worker(t *testing.T, cfg Config) *Worker {
	t.Helper()
	cfg.SpoolDir = t.TempDir()
	w, err := NewWorker(cfg, tb.runtime(), tb.deps())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (tb *testbed) assembler(t *testing.T, cfg Config) *Assembler {
	t.Helper()
	d := tb.deps()
	d.EdgeBase, d.Enum = nil, nil // the assembler never talks to EdgeBase
	a, err := NewAssembler(cfg, tb.runtime(), d)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (tb *testbed) scheduler(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := NewScheduler(cfg, tb.runtime(), tb.deps())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// invocation is the context of one Lambda invocation with the given
// request id and time left.
func invocation(parent context.Context, requestID string, left time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(lambdacontext.NewContext(parent, &lambdacontext.LambdaContext{AwsRequestID: requestID}), left)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startBackup starts a backup job through the scheduler function.
func (tb *testbed) startBackup(ctx context.Context, t *testing.T, id string, opts events.Options) *events.Job {
	t.Helper()
	payload, _ := json.Marshal(events.StartRequest{JobID: id, Kind: events.KindBackup, Options: opts})
	ictx, cancel := invocation(ctx, "start-"+id, time.Minute)
	defer cancel()
	res, err := tb.scheduler(t, tb.config(lambdaenv.Scheduler)).Handle(ictx, payload)
	if err != nil || res.State != events.StateRunning || res.JobID != id {
		t.Fatalf("start %s: %+v %v", id, res, err)
	}
	return tb.job(ctx, t, id)
}

func (tb *testbed) job(ctx context.Context, t *testing.T, id string) *events.Job {
	t.Helper()
	job, err := tb.jobs.ReadJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// receiveAll takes every visible message of q (leaving it in flight).
func receiveAll(ctx context.Context, t *testing.T, q pipeline.Queue) []pipeline.Delivery {
	t.Helper()
	var out []pipeline.Delivery
	for {
		ds, err := q.Receive(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return out
		}
		out = append(out, ds...)
	}
}

// takeTasks receives and deletes every visible task message of q.
func takeTasks(ctx context.Context, t *testing.T, q pipeline.Queue) []events.Task {
	t.Helper()
	var out []events.Task
	for _, d := range receiveAll(ctx, t, q) {
		env, err := events.Decode(d.Body)
		if err != nil || env.Task == nil {
			t.Fatalf("not a task: %s", d.Body)
		}
		out = append(out, *env.Task)
		if err := q.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// taskOf returns the task of kind among tasks.
func taskOf(t *testing.T, tasks []events.Task, kind events.TaskKind) events.Task {
	t.Helper()
	for _, tk := range tasks {
		if tk.Kind == kind {
			return tk
		}
	}
	t.Fatalf("no %s task among %d", kind, len(tasks))
	return events.Task{}
}

func body(t *testing.T, env events.Envelope) []byte {
	t.Helper()
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func send(ctx context.Context, t *testing.T, q pipeline.Queue, bodies ...[]byte) {
	t.Helper()
	for _, b := range bodies {
		if err := q.Send(ctx, pipeline.Message{Body: b}); err != nil {
			t.Fatal(err)
		}
	}
}

// failedIDs lists a response's failed message ids.
func failedIDs(resp awsevents.SQSEventResponse) []string {
	out := []string{}
	for _, f := range resp.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

// recording is an event source that also keeps the handler's responses.
type recording struct {
	*lambdatest.EventSource
	mu    sync.Mutex
	evs   []awsevents.SQSEvent
	resps []awsevents.SQSEventResponse
}

// lastEvent is the batch of the latest invocation.
func (r *recording) lastEvent() awsevents.SQSEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evs[len(r.evs)-1]
}

func newRecording(q pipeline.Queue, h lambdatest.Handler, batch int, timeout time.Duration) *recording {
	r := &recording{}
	r.EventSource = &lambdatest.EventSource{Queue: q, BatchSize: batch, Timeout: timeout,
		Handler: func(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
			resp, err := h(ctx, ev)
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.resps = append(r.resps, resp)
			r.mu.Unlock()
			return resp, err
		}}
	return r
}

// poll runs one invocation over what q holds and returns its response.
func (r *recording) poll(ctx context.Context, t *testing.T) awsevents.SQSEventResponse {
	t.Helper()
	n, err := r.Poll(ctx, 0)
	if err != nil || n == 0 {
		t.Fatalf("poll: %d records, %v", n, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resps[len(r.resps)-1]
}

// metricCount sums metric name over the EMF lines written so far.
func (tb *testbed) metricCount(t *testing.T, name string) int {
	t.Helper()
	n := 0
	for _, m := range tb.metrics.lines(t, name) {
		if v, ok := m[name].(float64); ok {
			n += int(v)
		}
	}
	return n
}
