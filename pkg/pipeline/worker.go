package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Result is what a task handler reports.
type Result struct {
	Rows    int64
	Objects int64
	Bytes   int64
	// Skipped counts objects found already in place and not written
	// again; Deleted counts objects deleted.
	Skipped, Deleted int64
	Warnings         []string
	// WarningsOmitted counts warnings the handler summarised instead of
	// listing.
	WarningsOmitted int
}

// Warn adds a warning, keeping at most events.MaxWarnings.
func (r *Result) Warn(format string, args ...any) {
	if len(r.Warnings) < events.MaxWarnings {
		r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
	} else {
		r.WarningsOmitted++
	}
}

// Unit is one delivery of a task, as its handler sees it.
type Unit struct {
	Job  *events.Job
	Task events.Task
	// Output is the key prefix (ending in '/') this delivery writes its
	// outputs under. Of concurrent or repeated deliveries exactly one
	// records its outcome, and only its Output is ever read.
	Output string
}

// Handler runs one kind of task. It must be idempotent: a task can be
// delivered more than once, concurrently or after it already finished.
// Outputs go under u.Output; effects outside the store (a restore's writes
// to the target) must converge when repeated.
type Handler func(ctx context.Context, u Unit) (Result, error)

// Worker runs delivered tasks with the handlers registered per kind and
// records each outcome.
type Worker struct {
	Jobs     *Jobs
	Handlers map[events.TaskKind]Handler
	// MaxAttempts is how many deliveries a task gets before it fails for
	// good; keep it equal to the dead-letter queue's maxReceiveCount.
	MaxAttempts int
	// LeaseTimeout is how long a run-once task's lease protects it; after
	// that the holder is presumed dead (set it above the task timeout).
	LeaseTimeout time.Duration
	// OnFinish, when set, sees every recorded outcome (progress display,
	// metrics). It must be safe for concurrent use.
	OnFinish func(t events.Task, st events.TaskStatus)
	Log      *slog.Logger
}

// Process runs one delivery of t; attempt is 1 on the first. A nil error
// means the message can be deleted; otherwise Decide says what to do with
// it.
func (w *Worker) Process(ctx context.Context, t events.Task, attempt int) error {
	log := logger(w.Log).With("job", t.Job, "task", t.ID, "unit", t.Unit, "attempt", attempt)
	if _, ok, err := w.Jobs.Done(ctx, t); err != nil {
		return fmt.Errorf("pipeline: reading the outcome of %s: %w", t.ID, err)
	} else if ok {
		log.Debug("task already done; dropping the redelivery")
		return nil
	}
	if st, ok, err := w.Jobs.Failed(ctx, t); err != nil {
		return fmt.Errorf("pipeline: reading the outcome of %s: %w", t.ID, err)
	} else if ok {
		return fmt.Errorf("%w: %s: %s", ErrTaskFailed, t.Unit, st.Error)
	}
	job, err := w.Jobs.ReadJob(ctx, t.Job)
	if errors.Is(err, blob.ErrNotExist) {
		log.Warn("task of an unknown job; dropping it")
		return nil
	} else if err != nil {
		return err
	}
	if run, err := w.admit(job, t, log); !run {
		return err
	}
	h, ok := w.Handlers[t.Kind]
	if !ok {
		return w.finish(ctx, t, attempt, "", Result{}, Permanent(fmt.Errorf("no handler for task kind %q", t.Kind)), log)
	}
	var owner string
	if t.Wipes {
		var run bool
		if run, owner, err = w.lease(ctx, t); err != nil || !run {
			return err
		}
	}
	output := w.Jobs.OutputPrefix(t.Job, t.ID, newToken())
	start := time.Now()
	res, herr := h(ctx, Unit{Job: job, Task: t, Output: output})
	log.Debug("task ran", "took", time.Since(start), "err", herr)
	if t.Wipes && herr != nil {
		// Free the lease so the retry of this failed run may take it.
		if err := w.release(context.WithoutCancel(ctx), t, owner); err != nil {
			log.Warn("could not release lease", "err", err)
		}
	}
	if herr != nil && ctx.Err() != nil {
		// Cut short by the deadline: not the task's fault, let it redeliver.
		w.discard(ctx, output)
		return herr
	}
	return w.finish(ctx, t, attempt, output, res, herr, log)
}

// admit fences a task against its job's state: tasks of finished jobs are
// dropped, and so are tasks of a closed phase that delete data (a late or
// duplicate wipe would destroy what later phases restored).
func (w *Worker) admit(job *events.Job, t events.Task, log *slog.Logger) (bool, error) {
	switch {
	case job.State.Terminal():
		log.Info("job already finished; dropping task", "state", job.State)
		return false, nil
	case job.Phase == t.Phase:
		return true, nil
	case t.Wipes || job.Phase > t.Phase:
		log.Warn("refusing task of a closed phase", "taskPhase", t.Phase, "jobPhase", job.Phase)
		return false, nil
	}
	return false, fmt.Errorf("pipeline: task %s belongs to phase %d, job is in phase %d", t.ID, t.Phase, job.Phase)
}

func (w *Worker) finish(ctx context.Context, t events.Task, attempt int, output string, res Result, herr error, log *slog.Logger) error {
	st := events.TaskStatus{
		Task: t.ID, Unit: t.Unit, Phase: t.Phase, Attempts: attempt,
		Rows: res.Rows, Objects: res.Objects, Bytes: res.Bytes, Skipped: res.Skipped, Deleted: res.Deleted, Warnings: res.Warnings,
		WarningsOmitted: res.WarningsOmitted, Output: output, Finished: w.Jobs.Now().UTC(),
	}
	switch {
	case herr == nil || isWarning(herr):
		st.State = events.TaskDone
		if herr != nil {
			st.Warning, st.Error = true, herr.Error()
			log.Warn("task failed; continuing (warning only)", "err", herr)
		}
		err := w.Jobs.recordDone(ctx, t, st)
		if errors.Is(err, blob.ErrExist) {
			// Another delivery finished first; its outputs are the ones.
			log.Debug("task finished by another delivery; discarding this one's outputs")
			w.discard(ctx, output)
			return nil
		}
		if err != nil {
			// The outcome may have been stored although the write reported
			// a failure, naming these outputs: keep them. The redelivery
			// finds the outcome, or runs the task again.
			return fmt.Errorf("pipeline: recording the outcome of %s: %w", t.ID, err)
		}
		w.notify(t, st)
		return nil
	case IsPermanent(herr) || attempt >= w.maxAttempts():
		w.discard(ctx, output)
		st.State, st.Error, st.Output = events.TaskFailed, herr.Error(), ""
		log.Error("task failed", "err", herr)
		if err := w.Jobs.recordFailed(ctx, t, st); err != nil {
			return errors.Join(herr, fmt.Errorf("pipeline: recording the failure of %s: %w", t.ID, err))
		}
		w.notify(t, st)
		return fmt.Errorf("%w: %s: %w", ErrTaskFailed, t.Unit, herr)
	}
	w.discard(ctx, output)
	st.State, st.Error, st.Output = events.TaskRetrying, herr.Error(), ""
	log.Warn("task failed; will retry", "err", herr)
	if err := w.Jobs.recordRetry(ctx, t, st); err != nil {
		log.Warn("could not record the failed attempt", "err", err)
	}
	w.notify(t, st)
	return fmt.Errorf("%s: %w", t.Unit, herr)
}

func (w *Worker) notify(t events.Task, st events.TaskStatus) {
	if w.OnFinish != nil {
		w.OnFinish(t, st)
	}
}

// discard deletes what a delivery wrote that will never be used (best
// effort: staging is deleted with the job anyway).
func (w *Worker) discard(ctx context.Context, output string) {
	if output == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = w.Jobs.deletePrefix(dctx, output, "")
}

// lease makes a run-once task (a wipe) exclusive across concurrent
// deliveries. The lease object is kept after success, so even a duplicate
// that slips past the outcome check cannot run the task a second time. A
// lease whose holder outlived LeaseTimeout is taken over by
// compare-and-swap, so of two late deliveries only one takes it.
func (w *Worker) lease(ctx context.Context, t events.Task) (run bool, owner string, err error) {
	key := w.Jobs.leaseKey(t.Job, t.ID)
	mine := events.Lease{Owner: newToken(), Until: w.Jobs.Now().Add(w.leaseTimeout()).UTC()}
	b, _ := json.Marshal(mine)
	err = w.Jobs.Store.Create(ctx, key, strings.NewReader(string(b)))
	if err == nil {
		return true, mine.Owner, nil
	}
	if !errors.Is(err, blob.ErrExist) {
		return false, "", fmt.Errorf("pipeline: lease for %s: %w", t.ID, err)
	}
	if _, ok, derr := w.Jobs.Done(ctx, t); derr == nil && ok {
		return false, "", nil
	}
	rc, v, err := w.Jobs.Store.ReadVersion(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return false, "", fmt.Errorf("%w (%s: its lease was just released)", ErrBusy, t.Unit)
	}
	if err != nil {
		return false, "", fmt.Errorf("pipeline: lease for %s: %w", t.ID, err)
	}
	var held events.Lease
	derr := json.NewDecoder(rc).Decode(&held)
	rc.Close()
	if derr == nil && held.Live(w.Jobs.Now()) {
		return false, "", fmt.Errorf("%w (%s, until %s)", ErrBusy, t.Unit, held.Until.Format(time.RFC3339))
	}
	// The holder outlived any task timeout (or released its lease after a
	// failed run): it is gone. Take over.
	if err := w.Jobs.Store.Replace(ctx, key, strings.NewReader(string(b)), v); err != nil {
		if errors.Is(err, blob.ErrConflict) {
			return false, "", fmt.Errorf("%w (%s: another delivery took over its lease)", ErrBusy, t.Unit)
		}
		return false, "", fmt.Errorf("pipeline: taking over the lease for %s: %w", t.ID, err)
	}
	return true, mine.Owner, nil
}

// release frees the lease owner held for a failed run, unless another
// delivery took it over meanwhile (the holder was presumed dead): that
// delivery's run is still protected by it. The lease is expired by
// compare-and-swap rather than deleted, so a takeover racing with the
// release is never undone; the next delivery takes the expired lease over.
func (w *Worker) release(ctx context.Context, t events.Task, owner string) error {
	key := w.Jobs.leaseKey(t.Job, t.ID)
	rc, v, err := w.Jobs.Store.ReadVersion(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var held events.Lease
	derr := json.NewDecoder(rc).Decode(&held)
	rc.Close()
	if derr != nil || held.Owner != owner {
		return nil
	}
	b, _ := json.Marshal(events.Lease{Owner: owner})
	if err := w.Jobs.Store.Replace(ctx, key, strings.NewReader(string(b)), v); err != nil && !errors.Is(err, blob.ErrConflict) {
		return err
	}
	return nil
}

func (w *Worker) maxAttempts() int {
	if w.MaxAttempts <= 0 {
		return DefaultMaxAttempts
	}
	return w.MaxAttempts
}

func (w *Worker) leaseTimeout() time.Duration {
	if w.LeaseTimeout <= 0 {
		return DefaultLeaseTimeout
	}
	return w.LeaseTimeout
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// RecordLost records a task as failed when its last delivery could not run
// it (the serverless runtime's deadline): the queue dead-letters the
// message next, and a job whose task has no outcome would wait for it
// until it timed out.
func (w *Worker) RecordLost(ctx context.Context, t events.Task, attempt int, why string) {
	if _, ok, err := w.Jobs.Done(ctx, t); err != nil || ok {
		return
	}
	st := events.TaskStatus{Task: t.ID, Unit: t.Unit, Phase: t.Phase, State: events.TaskFailed, Attempts: attempt, Error: why, Finished: w.Jobs.Now().UTC()}
	if err := w.Jobs.recordFailed(ctx, t, st); err != nil {
		logger(w.Log).Error("could not record a lost task as failed", "task", t.ID, "err", err)
		return
	}
	w.notify(t, st)
}
