package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

// epoch is where every test clock starts.
var epoch = time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)

// clock runs in real time from epoch and can be moved forward, so leases
// and timeouts expire when a test says so without the test sleeping, and
// nothing is decided by a frozen instant.
type clock struct {
	mu    sync.Mutex
	start time.Time
	skip  time.Duration
}

func newClock() *clock { return &clock{start: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return epoch.Add(time.Since(c.start) + c.skip)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skip += d
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeKind is the task kind of the fake domain.
const fakeKind events.TaskKind = "fake"

// fake is a tiny job domain: its planner emits phases[p] tasks in phase
// p (units unit-1, unit-2, ... in plan order), and its handler counts the
// calls of every task and runs whatever the test sets in run.
type fake struct {
	jobs   *pipeline.Jobs
	phases []int
	wipes  bool
	first  func(seq int) bool // marks tasks First
	// plan runs before the plan is written: to block or fail planning.
	plan    func(ctx context.Context, job *events.Job) error
	planned atomic.Int32
	// run decides a task's outcome (default: done with one row).
	run func(ctx context.Context, u pipeline.Unit) (pipeline.Result, error)

	mu        sync.Mutex
	calls     map[string]int
	order     []events.Task // tasks in the order their handlers started
	seenPhase []int         // the job's open phase when each handler started
}

func (f *fake) Plan(ctx context.Context, job *events.Job) error {
	f.planned.Add(1)
	if f.plan != nil {
		if err := f.plan(ctx, job); err != nil {
			return err
		}
	}
	seq := 0
	n, err := f.jobs.WritePlan(ctx, job.ID, func(emit func(events.Task) error) error {
		for p, n := range f.phases {
			for range n {
				seq++
				t := events.Task{ID: pipeline.TaskID(seq, fakeKind), Kind: fakeKind, Phase: p, Unit: fmt.Sprintf("unit-%d", seq), Wipes: f.wipes}
				t.First = f.first != nil && f.first(seq)
				if err := emit(t); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	job.Tasks, job.PhaseTasks = n, append([]int(nil), f.phases...)
	return nil
}

func (f *fake) handle(ctx context.Context, u pipeline.Unit) (pipeline.Result, error) {
	f.mu.Lock()
	f.calls[u.Task.ID]++
	f.order = append(f.order, u.Task)
	f.seenPhase = append(f.seenPhase, u.Job.Phase)
	f.mu.Unlock()
	if f.run != nil {
		return f.run(ctx, u)
	}
	return pipeline.Result{Rows: 1, Bytes: 10}, nil
}

// callsOf reports how often the handler ran task id.
func (f *fake) callsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

// totalCalls reports how often the handler ran.
func (f *fake) totalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// finisher is a fake finish step whose behaviour the test sets.
type finisher struct {
	calls atomic.Int32
	fn    func(ctx context.Context, job *events.Job, call int) (pipeline.Outcome, error)
}

func (f *finisher) Finish(ctx context.Context, job *events.Job) (pipeline.Outcome, error) {
	n := int(f.calls.Add(1))
	if f.fn != nil {
		return f.fn(ctx, job, n)
	}
	return pipeline.Outcome{Archive: "archives/" + job.ID + ".json", ArchiveSize: 42}, nil
}

// setup describes the engine a test runs.
type setup struct {
	phases    []int
	wipes     bool
	first     func(seq int) bool // marks tasks First
	opt       pipeline.Options
	finisher  bool // register a finish step
	noControl bool // embedded: checks do not travel by queue
}

// env is an engine over a directory store and in-memory queues, with the
// fake domain registered as the backup kind. The store and the task queue
// are wrapped in fault injectors that do nothing until a test arms them.
type env struct {
	clock   *clock
	fs      *fs.Store
	store   *blobtest.Faulty
	jobs    *pipeline.Jobs
	tasks   *mem.Queue
	taskQ   *queuetest.Faulty
	control *mem.Queue
	ctrlQ   *queuetest.Faulty
	eng     *pipeline.Engine
	fake    *fake
	fin     *finisher
	// onSend, when set, sees every send to the task queue before it
	// happens.
	onSend func(msgs []pipeline.Message)
}

// hookQueue lets a test look at the stored state when tasks are sent.
type hookQueue struct {
	pipeline.Queue
	e *env
}

func (h hookQueue) Send(ctx context.Context, msgs ...pipeline.Message) error {
	if h.e.onSend != nil {
		h.e.onSend(msgs)
	}
	return h.Queue.Send(ctx, msgs...)
}

func newEnv(t *testing.T, s setup) *env {
	t.Helper()
	e := &env{clock: newClock()}
	var err error
	if e.fs, err = fs.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.fs.Close() })
	e.store = blobtest.NewFaulty(e.fs, true)
	if e.jobs, err = pipeline.NewJobs(e.store, "staging/", "archives/", e.clock.Now); err != nil {
		t.Fatal(err)
	}
	e.tasks = mem.New(mem.Options{VisibilityTimeout: time.Hour, Now: e.clock.Now})
	e.taskQ = queuetest.NewFaulty(e.tasks, 1)
	e.control = mem.New(mem.Options{VisibilityTimeout: time.Hour, Now: e.clock.Now})
	e.ctrlQ = queuetest.NewFaulty(e.control, 2)
	e.fake = &fake{jobs: e.jobs, phases: s.phases, wipes: s.wipes, first: s.first, calls: map[string]int{}}
	dom := pipeline.Domain{Planner: e.fake, Handlers: map[events.TaskKind]pipeline.Handler{fakeKind: e.fake.handle}}
	if s.finisher {
		e.fin = &finisher{}
		dom.Finisher = e.fin
	}
	cfg := pipeline.Config{Jobs: e.jobs, Tasks: hookQueue{e.taskQ, e}, Options: s.opt, Target: "http://edgebase.test", Source: "docker",
		Domains: map[events.JobKind]pipeline.Domain{events.KindBackup: dom}}
	if !s.noControl {
		cfg.Control = e.ctrlQ
	}
	if e.eng, err = pipeline.New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// start plans and launches a job of the fake domain.
func (e *env) start(ctx context.Context, t *testing.T, id string) *events.Job {
	t.Helper()
	job, err := e.eng.Start(ctx, events.StartRequest{JobID: id, Kind: events.KindBackup})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return job
}

func (e *env) job(ctx context.Context, t *testing.T, id string) *events.Job {
	t.Helper()
	job, err := e.jobs.ReadJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// createJob stores a job record in the given state, as if a scheduler had
// got it there.
func (e *env) createJob(ctx context.Context, t *testing.T, job events.Job) *events.Job {
	t.Helper()
	if job.Kind == "" {
		job.Kind = events.KindBackup
	}
	if job.CreatedAt.IsZero() {
		job.CreatedAt = e.clock.Now().UTC()
	}
	if err := e.jobs.CreateJob(ctx, &job); err != nil {
		t.Fatal(err)
	}
	return &job
}

// task is a task of the fake domain, by plan position.
func task(job string, seq, phase int) events.Task {
	return events.Task{Job: job, ID: pipeline.TaskID(seq, fakeKind), Kind: fakeKind, Phase: phase, Unit: fmt.Sprintf("unit-%d", seq)}
}

// drain receives every visible message of q (acking it) and returns the
// tasks they carry.
func drain(ctx context.Context, t *testing.T, q pipeline.Queue) []events.Task {
	t.Helper()
	var out []events.Task
	for {
		ds, err := q.Receive(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return out
		}
		for _, d := range ds {
			env, err := events.Decode(d.Body)
			if err != nil || env.Task == nil {
				t.Fatalf("not a task message: %s (%v)", d.Body, err)
			}
			out = append(out, *env.Task)
			if err := q.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checks receives every visible check message of q (acking it).
func checks(ctx context.Context, t *testing.T, q pipeline.Queue) []events.Check {
	t.Helper()
	var out []events.Check
	for {
		ds, err := q.Receive(ctx, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return out
		}
		for _, d := range ds {
			env, err := events.Decode(d.Body)
			if err != nil || env.Check == nil {
				t.Fatalf("not a check message: %s (%v)", d.Body, err)
			}
			out = append(out, *env.Check)
			if err := q.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// run delivers tasks once each, in order, and wants every delivery to
// succeed.
func (e *env) run(ctx context.Context, t *testing.T, tasks []events.Task) {
	t.Helper()
	for _, task := range tasks {
		if err := e.eng.Worker.Process(ctx, task, 1); err != nil {
			t.Fatalf("task %s: %v", task.ID, err)
		}
	}
}

// ids lists the ids of tasks.
func ids(tasks []events.Task) []string {
	out := make([]string, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

// calls counts the store calls of op on keys containing part.
func (e *env) calls(op blobtest.Op, part string) int {
	n := 0
	for _, c := range e.store.Calls() {
		if c.Op == op && strings.Contains(c.Key, part) {
			n++
		}
	}
	return n
}

var errTransient = errors.New("transient failure")
