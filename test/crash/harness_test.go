package crash

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/internal/lambdaenv"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob/blobtest"
	"github.com/edgevault/edgevault/pkg/blob/fs"
	"github.com/edgevault/edgevault/pkg/discovery"
	"github.com/edgevault/edgevault/pkg/edgebase"
	"github.com/edgevault/edgevault/pkg/edgebase/edgebasetest"
	"github.com/edgevault/edgevault/pkg/edgevault"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
	"github.com/edgevault/edgevault/pkg/repository"
	"github.com/edgevault/edgevault/pkg/restore"
	"github.com/edgevault/edgevault/pkg/sensitive"
	"github.com/edgevault/edgevault/pkg/serverless"
	"github.com/edgevault/edgevault/pkg/serverless/lambdatest"
)

// epoch is where every run's clock starts; the clocks advance in real
// time from there.
var epoch = time.Date(2026, 3, 7, 10, 0, 0, 0, time.UTC)

// advancing returns a clock that starts at epoch now and runs in real time.
func advancing() func() time.Time {
	t0 := time.Now()
	return func() time.Time { return epoch.Add(time.Since(t0)) }
}

// errKilled is what every operation of a dead process sees.
var errKilled = errors.New("crash: the process is dead")

const (
	staging  = "staging/"
	archives = "archives/"
	// maxRun bounds one scenario: a run that has not ended by then is stuck.
	maxRun = 90 * time.Second
)

// world is what every run shares: the source deployment, and the clean
// backup of it (the archive restores read, and the content every backup
// must reproduce).
type world struct {
	src         *edgebasetest.Emulator
	srcPrint    string
	archivePath string
	content     string // contentOf the clean archive
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

// getWorld builds the world once per test binary.
func getWorld(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() { theWorld, worldErr = buildWorld() })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return theWorld
}

func buildWorld() (*world, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "edgevault-crash-")
	if err != nil {
		return nil, err
	}
	src, err := edgebasetest.New(edgebasetest.Options{StateDir: filepath.Join(dir, "src"), Now: func() time.Time { return epoch }})
	if err != nil {
		return nil, err
	}
	if err := seedSmall(ctx, src); err != nil {
		return nil, err
	}
	w := &world{src: src}
	if w.srcPrint, err = printOf(ctx, src); err != nil {
		return nil, err
	}
	// Two clean backups: the first wakes every DO (a cold start reorders a
	// dump's rows), the second is the reference.
	for range 2 {
		r := newRig(nil, w, scenario{kind: events.KindBackup, wiring: embedded}, filepath.Join(dir, fmt.Sprintf("clean-%d", time.Now().UnixNano())))
		job, err := r.run(ctx)
		if err != nil {
			return nil, err
		}
		if job.State != events.StateDone {
			return nil, fmt.Errorf("clean backup ended %s: %v", job.State, job.Errors)
		}
		w.archivePath = filepath.Join(r.dir, filepath.FromSlash(job.Archive))
		r.close()
	}
	if w.content, err = contentOf(w.archivePath); err != nil {
		return nil, err
	}
	return w, nil
}

// instances are the instance DOs seedSmall creates.
var instances = []string{"workspace:ws-1", "workspace:ws-3"}

// seedSmall seeds every kind of unit a job handles, small enough that a
// run takes a fraction of a second: users, a D1 data namespace, a DB DO,
// two instance DOs, and R2 objects with awkward keys over three page
// ranges (RangeKeys 5).
func seedSmall(ctx context.Context, e *edgebasetest.Emulator) error {
	if err := e.AddUsers(ctx, edgebasetest.User{Email: "a@example.test", DisplayName: "Zoë 🚀"},
		edgebasetest.User{Email: "b@example.test", DisplayName: "B", Role: "admin"}); err != nil {
		return err
	}
	steps := []struct {
		target, table string
		rows          []edgebasetest.Row
	}{
		{"shared", "posts", []edgebasetest.Row{{"id": "p1", "title": "日本語", "body": nil}, {"id": "p2", "title": "quotes \" \\", "body": strings.Repeat("long ", 200)}}},
		{"shared", "tags", []edgebasetest.Row{{"id": "t1", "name": "ünïcödé"}}},
		{"ledger", "entries", []edgebasetest.Row{{"id": "e1", "amount": 0.1, "memo": nil}, {"id": "e2", "amount": 1e21, "memo": []byte{0, 1, 0xff}}}},
		{"workspace:ws-1", "tasks", []edgebasetest.Row{{"id": "w1", "title": "one", "done": true}}},
		{"workspace:ws-3", "tasks", []edgebasetest.Row{{"id": "w3", "title": "big", "done": int64(9007199254740993)}}},
	}
	for _, s := range steps {
		if err := e.AddRows(ctx, s.target, s.table, s.rows...); err != nil {
			return err
		}
	}
	return e.AddObjects(ctx, edgebasetest.DemoObjects()[220:232]...)
}

func printOf(ctx context.Context, e *edgebasetest.Emulator) (string, error) {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	fp, err := edgebasetest.TakeFingerprint(ctx, e.URL(), edgebasetest.FingerprintOptions{ServiceKey: e.ServiceKey(), Instances: instances, Client: hc})
	if err != nil {
		return "", err
	}
	return strings.Join(fp.Lines, "\n"), nil
}

// contentOf digests an archive's content: every tar member's name and
// bytes, with backup.json's timestamp (the job's start time) left out.
func contentOf(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if strings.HasSuffix(path, ".json") {
		b, err := io.ReadAll(f)
		if err != nil {
			return "", err
		}
		return digestJSON(b)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(zr)
	var lines []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return "", err
		}
		d := fmt.Sprintf("%x", sha256.Sum256(b))
		if h.Name == "backup.json" {
			if d, err = digestJSON(b); err != nil {
				return "", err
			}
		}
		lines = append(lines, h.Name+" "+d)
	}
	return strings.Join(lines, "\n"), nil
}

var timestampField = regexp.MustCompile(`"timestamp":\s*"[^"]*"`)

func digestJSON(b []byte) (string, error) {
	if !json.Valid(b) {
		return "", errors.New("backup.json is not valid JSON")
	}
	h := sha256.Sum256(timestampField.ReplaceAll(b, []byte(`"timestamp":""`)))
	return hex.EncodeToString(h[:]), nil
}

type wiring string

const (
	embedded    wiring = "embedded"
	serverlessW wiring = "serverless"
)

type scenario struct {
	kind   events.JobKind
	wiring wiring
	// repo makes a backup a repository backup: a snapshot of a repository
	// in the same store instead of an archive.
	repo bool
}

func (s scenario) String() string {
	if s.repo {
		return "repository-" + string(s.kind) + "/" + string(s.wiring)
	}
	return string(s.kind) + "/" + string(s.wiring)
}

// rig is one run: a store and queues with faults, a clock, and for a
// restore a fresh target.
type rig struct {
	t       *testing.T
	w       *world
	sc      scenario
	dir     string
	fsStore *fs.Store
	store   *blobtest.Faulty
	tasks   *queuetest.Faulty
	control *queuetest.Faulty
	now     func() time.Time
	target  *edgebasetest.Emulator
	jobID   string

	dead     atomic.Bool
	mu       sync.Mutex
	killProc context.CancelFunc
	kills    int
}

func newRig(t *testing.T, w *world, sc scenario, dir string) *rig {
	fsStore, err := fs.NewWithOptions(dir, fs.Options{NoSync: func(string) bool { return true }})
	if err != nil {
		panic(err)
	}
	r := &rig{t: t, w: w, sc: sc, dir: dir, fsStore: fsStore, now: advancing(), jobID: string(sc.kind) + "-crash"}
	if sc.repo {
		// The repository lives beside the staging and archive prefixes;
		// its keys (config, keys/, data/, index/, snapshots/) never meet
		// theirs.
		if _, err := repository.InitWith(context.Background(), fsStore, repository.Credentials{Wrapper: testKey}, repoOptions); err != nil {
			panic(err)
		}
	}
	r.store = blobtest.NewFaulty(fsStore, true)
	r.tasks = queuetest.NewFaulty(nil, 1)
	r.control = queuetest.NewFaulty(nil, 2)
	// A dead process does nothing more.
	dead := func() bool { return r.dead.Load() }
	r.store.Inject(blobtest.Fault{When: dead, Err: errKilled})
	r.tasks.Inject(queuetest.Fault{When: dead, Err: errKilled})
	r.control.Inject(queuetest.Fault{When: dead, Err: errKilled})
	return r
}

// jobs reads the run's stored state past the faults.
func (r *rig) jobs() *pipeline.Jobs {
	j, err := pipeline.NewJobs(r.fsStore, staging, archives, r.now)
	if err != nil {
		panic(err)
	}
	return j
}

func (r *rig) close() {
	r.fsStore.Close()
	if r.target != nil {
		r.target.Close()
	}
}

// die kills the current process: its context ends and every operation it
// still tries fails.
func (r *rig) die() {
	r.dead.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kills++
	if r.killProc != nil {
		r.killProc()
	}
}

// process starts a process context that die cancels.
func (r *rig) process(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.killProc = cancel
	r.mu.Unlock()
	r.dead.Store(false)
	return pctx, cancel
}

func (r *rig) client(e *edgebasetest.Emulator) *edgebase.Client {
	c, err := edgebase.New(edgebase.Options{BaseURL: e.URL(), ServiceKey: sensitive.String(e.ServiceKey()),
		Retry: edgebase.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}})
	if err != nil {
		panic(err)
	}
	return c
}

// deployment is the EdgeBase side of the run: the source for a backup,
// a fresh target for a restore.
func (r *rig) deployment() *edgebasetest.Emulator {
	if r.sc.kind == events.KindBackup {
		return r.w.src
	}
	if r.target == nil {
		tg, err := edgebasetest.New(edgebasetest.Options{StateDir: filepath.Join(r.dir, "target"), Now: func() time.Time { return epoch }})
		if err != nil {
			panic(err)
		}
		r.target = tg
	}
	return r.target
}

func (r *rig) request() events.StartRequest {
	req := events.StartRequest{JobID: r.jobID, Kind: r.sc.kind, Trigger: events.TriggerAPI}
	if r.sc.kind == events.KindBackup {
		req.Options.IncludeStorage = true
	} else {
		req.Options.Archive = filepath.Base(r.w.archivePath)
	}
	return req
}

// run runs the job to its end in the scenario's wiring.
func (r *rig) run(ctx context.Context) (*events.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, maxRun)
	defer cancel()
	if r.sc.kind == events.KindRestore {
		if err := r.stageArchive(ctx); err != nil {
			return nil, err
		}
	}
	var err error
	if r.sc.wiring == embedded {
		err = r.runEmbedded(ctx)
	} else {
		err = r.runServerless(ctx)
	}
	r.dead.Store(false)
	job, rerr := r.jobs().ReadJob(context.Background(), r.jobID)
	if rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	if !job.State.Terminal() {
		return job, fmt.Errorf("stuck: job %s is %s (phase %d) after %s: %v", job.ID, job.State, job.Phase, maxRun, err)
	}
	return job, nil
}

// stageArchive puts the clean archive (and its manifest) where a restore
// of the serverless wiring finds it.
func (r *rig) stageArchive(ctx context.Context) error {
	for _, p := range []string{r.w.archivePath, archive.ManifestName(r.w.archivePath)} {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := r.fsStore.Put(ctx, archives+filepath.Base(p), bytes.NewReader(b)); err != nil {
			return err
		}
	}
	return nil
}

func (r *rig) deps() edgevault.Deps {
	e := r.deployment()
	c := r.client(e)
	return edgevault.Deps{Store: r.store, Staging: staging, Archives: archives, Client: c,
		Enum: &discovery.Enumerator{Client: c, StateDir: e.StateDir()}, Now: r.now, Source: "docker",
		OpenArchive: func(context.Context, string) (restore.Source, error) {
			return restore.BlobSource{Store: r.store, Key: archives + filepath.Base(r.w.archivePath)}, nil
		},
		Engine: pipeline.Options{MaxAttempts: 3, Backoff: pipeline.Backoff{Base: 5 * time.Millisecond, Limit: 50 * time.Millisecond},
			LeaseTimeout: 2 * time.Second, DispatchLease: 500 * time.Millisecond, FinishLease: time.Second, PlanLease: time.Second},
		Backup:  edgevault.BackupOptions{Concurrency: 4, RangeKeys: 5, ComposeAbove: -1, Repo: r.repoOpener(), Version: "crash"},
		Restore: edgevault.RestoreOptions{RangeKeys: 5, DORetry: edgebase.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}},
	}
}

// runEmbedded plays a user of the CLI: start the job; when the process
// dies or the run fails, start it again (a planning that never finished)
// or resume it, with a fresh in-process queue (a restart loses it).
func (r *rig) runEmbedded(ctx context.Context) error {
	var last error
	for attempt := range 8 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := r.process(ctx)
		q := mem.New(mem.Options{VisibilityTimeout: time.Hour})
		r.tasks.Queue = q
		d := r.deps()
		d.Tasks = r.tasks
		engine, err := edgevault.New(d)
		if err != nil {
			cancel()
			return err
		}
		err = r.startOrResume(pctx, engine, attempt)
		if err == nil {
			_, err = (&pipeline.Runner{Engine: engine, Queue: r.tasks, Depth: q.Len, Concurrency: 4, Tick: 20 * time.Millisecond, StallTicks: 50}).Run(pctx, r.jobID)
		}
		cancel()
		r.dead.Store(false)
		job, jerr := engine.Jobs().ReadJob(ctx, r.jobID)
		if jerr == nil && job.State.Terminal() {
			return nil
		}
		last = err
	}
	return fmt.Errorf("gave up after 8 restarts: %w", last)
}

func (r *rig) startOrResume(ctx context.Context, e *pipeline.Engine, attempt int) error {
	job, err := e.Jobs().ReadJob(ctx, r.jobID)
	switch {
	case attempt == 0 || err != nil:
		_, err = e.Start(ctx, r.request())
	case job.State.Terminal():
		return nil
	default:
		// What `create --resume` does (a planning cut short is planned
		// again).
		_, err = e.Resume(ctx, r.jobID)
	}
	return err
}

// runServerless plays AWS: the scheduler invoked asynchronously (retried
// by Lambda with the same request id), the worker and assembler fed by
// their queues, the watchdog on its schedule. Queues survive a crash; a
// dead process's messages come back after their visibility timeout.
func (r *rig) runServerless(ctx context.Context) error {
	tasksMem := mem.New(mem.Options{VisibilityTimeout: 500 * time.Millisecond})
	controlMem := mem.New(mem.Options{VisibilityTimeout: 500 * time.Millisecond})
	r.tasks.Queue, r.control.Queue = tasksMem, controlMem
	d := r.deps()
	cfgOf := func(fn string) serverless.Config {
		c := serverless.DefaultConfig(fn)
		c.Bucket, c.StagingPrefix, c.ArchivePrefix = "crash", staging, archives
		c.TaskQueueURL, c.ControlQueueURL, c.SchedulerFunction = "tasks", "control", "scheduler"
		c.EdgeBaseURL, c.ServiceKeySecret = d.Client.BaseURL(), "secret"
		c.MaxAttempts, c.RecheckDelay, c.RetryDelay = 3, 100*time.Millisecond, 5*time.Millisecond
		c.DeadlineMargin, c.ComposeAbove = 2*time.Second, -1
		c.Leases = serverless.Leases{Task: 2 * time.Second, Dispatch: 500 * time.Millisecond, Finish: time.Second, Plan: time.Second, StallAfter: 500 * time.Millisecond}
		if r.sc.repo {
			c.RepositoryPrefix, c.RepositoryKMSKey = "repository/", "test-key"
		}
		return c
	}
	sd := serverless.Deps{Store: r.store, Tasks: r.tasks, Control: r.control, EdgeBase: d.Client, Enum: d.Enum}
	if r.sc.repo {
		sd.Repository, sd.RepositoryKey = r.store, testKey
	}
	rt := serverless.Runtime{Now: r.now}
	sched, err := serverless.NewScheduler(cfgOf(lambdaenv.Scheduler), rt, sd)
	if err != nil {
		return err
	}
	worker, err := serverless.NewWorker(cfgOf(lambdaenv.Worker), rt, sd)
	if err != nil {
		return err
	}
	asm, err := serverless.NewAssembler(cfgOf(lambdaenv.Assembler), rt, sd)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(r.request())
	jobs := r.jobs()
	started, lastWatchdog := false, time.Time{}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		pctx, cancel := r.process(ctx)
		var wg sync.WaitGroup
		for _, es := range []*lambdatest.EventSource{
			{Queue: r.tasks, Handler: worker.Handle, BatchSize: 5, Timeout: 20 * time.Second},
			{Queue: r.control, Handler: asm.Handle, BatchSize: 1, Timeout: 20 * time.Second},
		} {
			wg.Go(func() { _ = es.Run(pctx) })
		}
		for pctx.Err() == nil {
			if !started && attempt < 3 {
				// Lambda's asynchronous invoke: the same request id on
				// each of its tries.
				ictx := lambdacontext.NewContext(pctx, &lambdacontext.LambdaContext{AwsRequestID: "start"})
				if _, err := sched.Handle(ictx, payload); err == nil {
					started = true
				}
			}
			if time.Since(lastWatchdog) > 500*time.Millisecond {
				lastWatchdog = time.Now()
				_, _ = sched.Handle(pctx, []byte(lambdaenv.WatchdogInput))
			}
			if job, err := jobs.ReadJob(ctx, r.jobID); err == nil && job.State.Terminal() {
				cancel()
				wg.Wait()
				return nil
			}
			select {
			case <-pctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		cancel()
		wg.Wait()
		if !started && attempt >= 3 {
			return errors.New("the scheduler's invocations all failed")
		}
	}
	return ctx.Err()
}

// checkEnd asserts the end state of a run.
func (r *rig) checkEnd(t *testing.T, job *events.Job, runErr error, what string) {
	t.Helper()
	if runErr != nil {
		t.Fatalf("%s: %v", what, runErr)
	}
	if job.State == events.StateFailed {
		if len(job.Errors) == 0 || job.Errors[0].Message == "" {
			t.Fatalf("%s: the job failed without naming a cause: %+v", what, job)
		}
		if r.sc.kind == events.KindRestore && restore.TargetState(job) == "" {
			t.Fatalf("%s: a failed restore does not say what state the target is in", what)
		}
		// A single transient fault must not fail a job: say which one did.
		t.Fatalf("%s: the job failed: %v", what, job.Errors)
	}
	if r.sc.repo {
		r.checkSnapshot(t, job, what)
		return
	}
	if r.sc.kind == events.KindBackup {
		path := filepath.Join(r.dir, filepath.FromSlash(job.Archive))
		if _, err := archive.Verify(context.Background(), path); err != nil {
			t.Fatalf("%s: the done job's archive does not verify against its manifest: %v", what, err)
		}
		got, err := contentOf(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != r.w.content {
			t.Fatalf("%s: the archive's content differs from the clean run's", what)
		}
		return
	}
	got, err := printOf(context.Background(), r.target)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != r.w.srcPrint {
		t.Fatalf("%s: the restored target differs from the source", what)
	}
}

// step is one place to inject a fault: the nth call of a class of
// operations seen in a clean run.
type step struct {
	op    blobtest.Op
	class string
	nth   int
}

// normalize turns a key into its class: ids, tokens and numbers that
// differ between calls of the same step are replaced.
var normalizers = []struct {
	re  *regexp.Regexp
	rep string
}{
	{regexp.MustCompile(`\b\d{8}-[a-z0-9-]+`), "{task}"},
	{regexp.MustCompile(`/[0-9a-f]{16}(/|$)`), "/{delivery}$1"},
	{regexp.MustCompile(`/[0-9a-f]{64}`), "/{hash}"},
	{regexp.MustCompile(`\d{13}-`), "{ts}-"},
	{regexp.MustCompile(`-\d{6,7}\.`), "-{n}."},
	{regexp.MustCompile(`/done/\d{3}/`), "/done/{phase}/"},
	{regexp.MustCompile(`^data/[0-9a-f]{2}/`), "data/{xx}/"},
}

func classOf(jobID, key string) string {
	k := strings.ReplaceAll(key, jobID, "{job}")
	for _, n := range normalizers {
		k = n.re.ReplaceAllString(k, n.rep)
	}
	return k
}

// steps lists the injection points of a clean run's calls: for every
// class of operation, its first and last call.
func steps(jobID string, calls []blobtest.Call) []step {
	count := map[string]int{}
	var order []string
	for _, c := range calls {
		k := string(c.Op) + " " + classOf(jobID, c.Key)
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var out []step
	for _, k := range order {
		op, class, _ := strings.Cut(k, " ")
		for _, n := range slices.Compact([]int{1, count[k]}) {
			out = append(out, step{op: blobtest.Op(op), class: class, nth: n})
		}
	}
	return out
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
