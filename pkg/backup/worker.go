package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Result is what a task handler reports.
type Result struct {
	Rows     int64
	Objects  int64
	Bytes    int64
	Warnings []string
}

// Handler runs one kind of task. It must be idempotent: a task can be
// delivered more than once, concurrently or after it already finished.
type Handler func(ctx context.Context, job *events.Job, t events.Task) (Result, error)

// permanentError marks failures that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (bad input, a refused
// request): the task fails on its first attempt.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// warningError marks failures of steps that must not fail the job (the
// _users_public resync, secrets): the task is recorded as done with a
// warning.
type warningError struct{ err error }

func (e *warningError) Error() string { return e.err.Error() }
func (e *warningError) Unwrap() error { return e.err }

// AsWarning marks err as a warning-only failure.
func AsWarning(err error) error {
	if err == nil {
		return nil
	}
	return &warningError{err}
}

// ErrTaskFailed is returned for a delivery of a task that has already
// failed for good, so the queue moves the message to its dead-letter queue.
var ErrTaskFailed = errors.New("backup: task failed permanently")

// ErrBusy is returned when another delivery of a run-once task holds its
// lease; the message should be retried later.
var ErrBusy = errors.New("backup: task is being run by another delivery")

// Worker runs delivered tasks with the handlers registered per kind and
// records each outcome under the job's status prefix.
type Worker struct {
	Jobs     *Jobs
	Handlers map[events.TaskKind]Handler
	// MaxAttempts is how many deliveries a task gets before it fails for
	// good; keep it equal to the dead-letter queue's maxReceiveCount.
	MaxAttempts int
	// LeaseTimeout is how long a run-once task's lease protects it; after
	// that the holder is presumed dead (set it above the task timeout).
	LeaseTimeout time.Duration
	// OnFinish, when set, sees every recorded outcome (progress display).
	OnFinish func(t events.Task, st events.TaskStatus)
	Log      *slog.Logger
}

// Process runs one delivery of t. A nil error means the message can be
// deleted; an error means it should be delivered again (or dead-lettered).
func (w *Worker) Process(ctx context.Context, t events.Task, attempt int) error {
	log := w.logger().With("job", t.Job, "task", t.ID, "unit", t.Unit, "attempt", attempt)
	st, err := w.Jobs.ReadStatus(ctx, t.Job, t.ID)
	switch {
	case err == nil && st.State == events.TaskDone:
		log.Debug("task already done; skipping redelivery")
		return nil
	case err == nil && st.State == events.TaskFailed:
		return fmt.Errorf("%w: %s: %s", ErrTaskFailed, t.Unit, st.Error)
	case err != nil && !errors.Is(err, blob.ErrNotExist):
		return fmt.Errorf("backup: reading status of %s: %w", t.ID, err)
	}
	job, err := w.Jobs.ReadJob(ctx, t.Job)
	if err != nil {
		if errors.Is(err, blob.ErrNotExist) {
			log.Warn("task of an unknown job; dropping")
			return nil
		}
		return err
	}
	if job.State.Terminal() {
		log.Info("job already finished; dropping task", "state", job.State)
		return nil
	}
	if job.Phase != t.Phase {
		if t.Wipes || job.Phase > t.Phase {
			// A late or duplicate delivery of a closed phase: running a wipe
			// now would destroy data restored since.
			log.Warn("refusing task of a closed phase", "taskPhase", t.Phase, "jobPhase", job.Phase)
			return nil
		}
		return fmt.Errorf("backup: task %s belongs to phase %d, job is in phase %d", t.ID, t.Phase, job.Phase)
	}
	h, ok := w.Handlers[t.Kind]
	if !ok {
		return w.finish(ctx, t, attempt, Result{}, Permanent(fmt.Errorf("no handler for task kind %q", t.Kind)), log)
	}
	if t.Wipes {
		run, err := w.lease(ctx, t)
		if err != nil || !run {
			return err
		}
	}
	start := time.Now()
	res, herr := h(ctx, job, t)
	log.Debug("task ran", "took", time.Since(start), "err", herr)
	if t.Wipes && herr != nil {
		// Free the lease so the retry of this failed run may take it.
		if err := w.Jobs.Store.Delete(context.WithoutCancel(ctx), w.leaseKey(t)); err != nil {
			log.Warn("could not release lease", "err", err)
		}
	}
	if herr != nil && ctx.Err() != nil {
		// Cut short by the deadline: not the task's fault, let it redeliver.
		return herr
	}
	return w.finish(ctx, t, attempt, res, herr, log)
}

func (w *Worker) finish(ctx context.Context, t events.Task, attempt int, res Result, herr error, log *slog.Logger) error {
	st := events.TaskStatus{
		Task: t.ID, Unit: t.Unit, Phase: t.Phase, Attempts: attempt,
		Rows: res.Rows, Objects: res.Objects, Bytes: res.Bytes, Warnings: res.Warnings,
		Finished: w.Jobs.Now().UTC(),
	}
	var warn *warningError
	switch {
	case herr == nil:
		st.State = events.TaskDone
	case errors.As(herr, &warn):
		st.State, st.Warning = events.TaskDone, true
		st.Error = herr.Error()
		log.Warn("task failed; continuing (warning only)", "err", herr)
	case IsPermanent(herr) || attempt >= w.maxAttempts():
		st.State, st.Error = events.TaskFailed, herr.Error()
		log.Error("task failed", "err", herr)
	default:
		st.State, st.Error = events.TaskRetrying, herr.Error()
		log.Warn("task failed; will retry", "err", herr)
	}
	if err := w.Jobs.WriteStatus(ctx, t.Job, st); err != nil {
		return errors.Join(herr, fmt.Errorf("backup: recording status of %s: %w", t.ID, err))
	}
	if w.OnFinish != nil {
		w.OnFinish(t, st)
	}
	if st.State == events.TaskDone {
		return nil
	}
	return fmt.Errorf("%s: %w", t.Unit, herr)
}

// lease makes a run-once task (a wipe) exclusive across concurrent
// deliveries. The lease object is kept after success, so even a duplicate
// that slips past the status check cannot run the task a second time.
func (w *Worker) lease(ctx context.Context, t events.Task) (run bool, err error) {
	key := w.leaseKey(t)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	stamp := w.Jobs.Now().UTC().Format(time.RFC3339Nano) + " " + hex.EncodeToString(nonce[:])
	err = w.Jobs.Store.Create(ctx, key, strings.NewReader(stamp))
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, blob.ErrExist) {
		return false, fmt.Errorf("backup: lease for %s: %w", t.ID, err)
	}
	if st, serr := w.Jobs.ReadStatus(ctx, t.Job, t.ID); serr == nil && st.State == events.TaskDone {
		return false, nil
	}
	var held string
	if rc, gerr := w.Jobs.Store.Get(ctx, key); gerr == nil {
		b, _ := io.ReadAll(io.LimitReader(rc, 256))
		rc.Close()
		held = string(b)
	}
	if held == stamp {
		// Our own Create succeeded and a retry below us saw it.
		return true, nil
	}
	at, _, _ := strings.Cut(held, " ")
	heldAt, _ := time.Parse(time.RFC3339Nano, at)
	if w.Jobs.Now().Sub(heldAt) < w.leaseTimeout() {
		return false, fmt.Errorf("%w (%s)", ErrBusy, t.Unit)
	}
	// The holder outlived any task timeout: it is gone. Take over.
	if err := w.Jobs.Store.Put(ctx, key, strings.NewReader(stamp)); err != nil {
		return false, fmt.Errorf("backup: taking over lease for %s: %w", t.ID, err)
	}
	return true, nil
}

func (w *Worker) leaseKey(t events.Task) string { return w.Jobs.key(t.Job, "locks", t.ID) }

func (w *Worker) maxAttempts() int {
	if w.MaxAttempts <= 0 {
		return 3
	}
	return w.MaxAttempts
}

func (w *Worker) leaseTimeout() time.Duration {
	if w.LeaseTimeout <= 0 {
		return 20 * time.Minute
	}
	return w.LeaseTimeout
}

func (w *Worker) logger() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}
