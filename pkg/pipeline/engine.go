package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Defaults of Options.
const (
	DefaultMaxAttempts   = 5
	DefaultLeaseTimeout  = 20 * time.Minute
	DefaultRecheckDelay  = 20 * time.Second
	DefaultDispatchLease = 15 * time.Minute
	DefaultFinishLease   = 5 * time.Minute
	DefaultPlanLease     = 15 * time.Minute
	DefaultJobTimeout    = 20 * time.Hour
	DefaultStallAfter    = 5 * time.Minute
	DefaultSendBatches   = 8
)

// Options tune the engine; zero values take the defaults.
type Options struct {
	// MaxAttempts is how many deliveries a task gets (the task queue's
	// maxReceiveCount).
	MaxAttempts int
	// LeaseTimeout protects a run-once task (a wipe) from a concurrent
	// delivery; set it above the task timeout.
	LeaseTimeout time.Duration
	// RecheckDelay spaces the check messages of a running job.
	RecheckDelay time.Duration
	// DispatchLease is how long the sending of a phase's tasks may take
	// before another invocation presumes the sender dead and sends the
	// phase again (the longest a sender can live: its function timeout).
	DispatchLease time.Duration
	// FinishLease is how long a finish step (assembly) holds the job
	// between renewals; an assembler that stops renewing is presumed dead
	// after it and another one takes over.
	FinishLease time.Duration
	// PlanLease is how long a planning invocation holds the job.
	PlanLease time.Duration
	// JobTimeout fails a job that is still not finished after this long.
	JobTimeout time.Duration
	// StallAfter: the watchdog re-sends a check to a running job none of
	// whose checks has run for this long.
	StallAfter time.Duration
	// Backoff spaces the retries of a failing task.
	Backoff Backoff
	// SendBatches bounds the batches of task messages in flight while a
	// phase is sent.
	SendBatches int
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	def(&o.LeaseTimeout, DefaultLeaseTimeout)
	def(&o.RecheckDelay, DefaultRecheckDelay)
	def(&o.DispatchLease, DefaultDispatchLease)
	def(&o.FinishLease, DefaultFinishLease)
	def(&o.PlanLease, DefaultPlanLease)
	def(&o.JobTimeout, DefaultJobTimeout)
	def(&o.StallAfter, DefaultStallAfter)
	def(&o.Backoff.Base, 10*time.Second)
	def(&o.Backoff.Limit, 5*time.Minute)
	if o.SendBatches <= 0 {
		o.SendBatches = DefaultSendBatches
	}
	return o
}

// Planner plans one kind of job: it writes the job's tasks with
// Jobs.WritePlan (each with its phase) and sets job.Tasks and
// job.PhaseTasks (tasks per phase; nil means one phase). It may add
// warnings and a summary to job. Plan runs again from scratch when an
// earlier planning of the job was interrupted.
type Planner interface {
	Plan(ctx context.Context, job *events.Job) error
}

// Finisher is a job kind's last step, run once every phase is done, under
// the job's finishing lease: the backup assembler. It must be
// deterministic for a given job (the same stored outcomes give the same
// bytes), since an assembler that lost its lease may still be writing
// while its successor runs.
type Finisher interface {
	Finish(ctx context.Context, job *events.Job) (Outcome, error)
}

// Outcome is what a finish step produced.
type Outcome struct {
	Archive, Manifest string
	// Snapshot is the repository snapshot a repository-mode backup wrote.
	Snapshot    string
	ArchiveSize int64
	Warnings    []string
}

// Domain is one kind of job plugged into the engine.
type Domain struct {
	Planner  Planner
	Handlers map[events.TaskKind]Handler
	Finisher Finisher // nil: the job is done when its last phase is
}

// Config is what New needs.
type Config struct {
	Jobs *Jobs
	// Tasks carries task messages. Control carries check messages; nil in
	// the embedded runtime, where Runner drives the checks itself.
	Tasks, Control Queue
	Domains        map[events.JobKind]Domain
	Options        Options
	// Target is the EdgeBase base URL and Source the archive's "source",
	// both recorded in new jobs.
	Target, Source string
	// NewID makes the id of a job started without one (default NewJobID).
	NewID func(kind events.JobKind, now time.Time) string
	Log   *slog.Logger
}

// Engine runs jobs: scheduling (Prepare, Launch, Start, Resume), the
// worker, the controller (Advance, HandleCheck) and the watchdog, over one
// Jobs store and the task and control queues.
type Engine struct {
	jobs    *Jobs
	tasks   Queue
	control Queue
	domains map[events.JobKind]Domain
	opt     Options
	target  string
	source  string
	newID   func(events.JobKind, time.Time) string
	log     *slog.Logger
	// Worker runs task deliveries; set its OnFinish to watch outcomes.
	Worker *Worker
}

// New builds an engine.
func New(c Config) (*Engine, error) {
	if c.Jobs == nil || c.Tasks == nil {
		return nil, errors.New("pipeline: an engine needs a job store and a task queue")
	}
	opt := c.Options.withDefaults()
	handlers := map[events.TaskKind]Handler{}
	for kind, d := range c.Domains {
		for tk, h := range d.Handlers {
			if _, dup := handlers[tk]; dup {
				return nil, fmt.Errorf("pipeline: task kind %q registered twice (job kind %s)", tk, kind)
			}
			handlers[tk] = h
		}
	}
	newID := c.NewID
	if newID == nil {
		newID = NewJobID
	}
	e := &Engine{jobs: c.Jobs, tasks: c.Tasks, control: c.Control, domains: c.Domains, opt: opt,
		target: c.Target, source: c.Source, newID: newID, log: logger(c.Log)}
	e.Worker = &Worker{Jobs: c.Jobs, Handlers: handlers, MaxAttempts: opt.MaxAttempts, LeaseTimeout: opt.LeaseTimeout, Log: e.log}
	return e, nil
}

// Jobs is the engine's job store.
func (e *Engine) Jobs() *Jobs { return e.jobs }

// Options are the engine's options with defaults applied.
func (e *Engine) Options() Options { return e.opt }

// WithLog returns a copy of e (sharing its stores, queues and worker
// settings) that logs to log: one per invocation, carrying its request id.
func (e *Engine) WithLog(log *slog.Logger) *Engine {
	c := *e
	c.log = logger(log)
	w := *e.Worker
	w.Log = c.log
	c.Worker = &w
	return &c
}

// NewJobID is the default id: kind, UTC start time, random suffix.
func NewJobID(kind events.JobKind, now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", kind, now.UTC().Format("20060102T150405Z"), hex.EncodeToString(b[:]))
}

// TaskID is the deterministic id of the seq-th task of a plan. The number
// is zero-padded so ids sort in plan order (Jobs.List order), which
// re-sending a phase relies on.
func TaskID(seq int, kind events.TaskKind) string { return fmt.Sprintf("%08d-%s", seq, kind) }

// ValidJobID accepts the ids the engine and the api generate and anything
// similar: a single key segment of safe characters that is not a name the
// staging area uses itself (index, names, targets: the engine's;
// idempotency: the api's).
func ValidJobID(id string) bool {
	switch id {
	case "index", "names", "targets", "idempotency", ".", "..":
		return false // staging directories of their own
	}
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return blob.ValidateKey(id) == nil
}

// JobFailedError describes a failed job by its failed units.
func JobFailedError(job *events.Job) error {
	if len(job.Errors) == 0 {
		return fmt.Errorf("job %s failed", job.ID)
	}
	msg := fmt.Sprintf("job %s failed: %s", job.ID, job.Errors[0])
	if len(job.Errors) > 1 {
		msg += fmt.Sprintf(" (and %d more failed units)", len(job.Errors)-1)
	}
	return errors.New(msg)
}

// sendCheck queues the check of a job that may act as sequence number seq.
func (e *Engine) sendCheck(ctx context.Context, id string, seq int, delay time.Duration) error {
	body, err := events.Envelope{Check: &events.Check{Job: id, Seq: seq}}.Encode()
	if err != nil {
		return err
	}
	return e.control.Send(ctx, Message{Body: body, Delay: delay})
}
