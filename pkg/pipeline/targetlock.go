package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
)

// Target locks keep a restore from overlapping any other job on the same
// target deployment. A restore replaces the target's data phase by phase;
// a backup taken meanwhile would archive a half-restored deployment, and
// two restores would interleave their wipes and writes. Backups may
// overlap each other: both only read, and a scheduled backup must not
// fail because someone asked for one on demand.
//
// The locks live in the staging area, one directory per target:
//
//	<staging>targets/<sha256(target)[:32]>/restore       the restore holding the target (exclusive)
//	<staging>targets/<sha256(target)[:32]>/backup/<job>  one marker per running backup (shared)
//
// A job takes its lock when it is prepared (before planning) and gives it
// back when it ends, whoever records the end (Jobs.Update sees every
// transition to done or failed). A lock whose holder ended, or whose
// record is gone, is stale: a restore takes a stale restore lock over by
// compare-and-swap (Replace), and removes stale backup markers. A
// released restore lock is kept, marked released, so its release cannot
// race with a successor's take-over (the blob store has no conditional
// delete). Both kinds write their own object first and then look at the
// other kind's, so of a restore and a backup starting together at least
// one sees the other: never both run (both may refuse).
//
// The staging area's lifecycle rule (a day) also removes forgotten locks;
// jobs time out well before (Options.JobTimeout).

// ErrTargetBusy is returned (wrapped in *TargetBusyError) when another job
// holds the target.
var ErrTargetBusy = errors.New("pipeline: the target is busy")

// TargetBusyError names the job that holds the target.
type TargetBusyError struct {
	Target string
	Holder TargetHolder
}

func (e *TargetBusyError) Error() string {
	return fmt.Sprintf("%s job %s is running on %s (since %s); a restore never overlaps another job on its target",
		e.Holder.Kind, e.Holder.Job, e.Target, e.Holder.Since.UTC().Format(time.RFC3339))
}

func (e *TargetBusyError) Unwrap() error { return ErrTargetBusy }

// TargetHolder is the content of a lock object.
type TargetHolder struct {
	Job      string         `json:"job"`
	Kind     events.JobKind `json:"kind"`
	Target   string         `json:"target"`
	Since    time.Time      `json:"since"`
	Released bool           `json:"released,omitempty"`
}

const maxLockTries = 10

func (j *Jobs) targetsPrefix() string { return j.Staging + "targets/" }

func (j *Jobs) targetDir(target string) string {
	h := sha256.Sum256([]byte(target))
	return j.targetsPrefix() + hex.EncodeToString(h[:16]) + "/"
}

// AcquireTarget takes job's lock on job.Target: exclusive for a restore,
// shared with other backups for a backup. Taking a lock the job already
// holds succeeds (a retried start). It fails with a *TargetBusyError
// when another live job holds what it needs.
func (j *Jobs) AcquireTarget(ctx context.Context, job *events.Job) error {
	dir := j.targetDir(job.Target)
	me := TargetHolder{Job: job.ID, Kind: job.Kind, Target: job.Target, Since: j.Now().UTC()}
	if job.Kind != events.KindRestore {
		marker := dir + "backup/" + job.ID
		if err := j.createJSON(ctx, marker, me); err != nil && !errors.Is(err, blob.ErrExist) {
			return fmt.Errorf("pipeline: target lock of job %s: %w", job.ID, err)
		}
		h, live, err := j.restoreHolder(ctx, dir)
		if err == nil && live && h.Job != job.ID {
			err = &TargetBusyError{Target: job.Target, Holder: h}
		}
		if err != nil {
			_ = j.Store.Delete(context.WithoutCancel(ctx), marker)
		}
		return err
	}
	if err := j.takeRestoreLock(ctx, dir+"restore", me); err != nil {
		return err
	}
	err := j.Store.List(ctx, dir+"backup/", func(info blob.Info) error {
		var h TargetHolder
		if err := j.GetJSON(ctx, info.Key, &h); errors.Is(err, blob.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		live, err := j.live(ctx, h.Job)
		if err != nil {
			return err
		}
		if !live {
			return j.Store.Delete(ctx, info.Key)
		}
		return &TargetBusyError{Target: job.Target, Holder: h}
	})
	if err != nil {
		j.releaseRestore(context.WithoutCancel(ctx), dir+"restore", job.ID)
		if !errors.Is(err, ErrTargetBusy) {
			err = fmt.Errorf("pipeline: target lock of job %s: %w", job.ID, err)
		}
	}
	return err
}

// takeRestoreLock creates the restore lock, or takes it over when it is
// released or stale.
func (j *Jobs) takeRestoreLock(ctx context.Context, key string, me TargetHolder) error {
	body, err := json.Marshal(me)
	if err != nil {
		return err
	}
	for try := 0; try < maxLockTries; try++ {
		err := j.Store.Create(ctx, key, bytes.NewReader(body))
		if err == nil {
			return nil
		}
		if !errors.Is(err, blob.ErrExist) {
			return fmt.Errorf("pipeline: target lock of job %s: %w", me.Job, err)
		}
		h, v, err := j.readHolder(ctx, key)
		if errors.Is(err, blob.ErrNotExist) {
			continue // expired between the two requests
		}
		if err != nil {
			return fmt.Errorf("pipeline: target lock of job %s: %w", me.Job, err)
		}
		if h.Job == me.Job && !h.Released {
			return nil
		}
		if !h.Released {
			live, err := j.live(ctx, h.Job)
			if err != nil {
				return fmt.Errorf("pipeline: target lock of job %s: %w", me.Job, err)
			}
			if live {
				return &TargetBusyError{Target: me.Target, Holder: h}
			}
		}
		err = j.Store.Replace(ctx, key, bytes.NewReader(body), v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, blob.ErrConflict) {
			return fmt.Errorf("pipeline: target lock of job %s: %w", me.Job, err)
		}
		// Someone else took it or released it meanwhile: look again.
	}
	return fmt.Errorf("pipeline: target lock of job %s: still contended after %d tries", me.Job, maxLockTries)
}

// restoreHolder reads the restore lock of a target directory and whether
// its holder is a live restore.
func (j *Jobs) restoreHolder(ctx context.Context, dir string) (TargetHolder, bool, error) {
	h, _, err := j.readHolder(ctx, dir+"restore")
	if errors.Is(err, blob.ErrNotExist) {
		return h, false, nil
	}
	if err != nil || h.Released {
		return h, false, err
	}
	live, err := j.live(ctx, h.Job)
	return h, live, err
}

func (j *Jobs) readHolder(ctx context.Context, key string) (TargetHolder, blob.Version, error) {
	var h TargetHolder
	rc, v, err := j.Store.ReadVersion(ctx, key)
	if err != nil {
		return h, "", err
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&h); err != nil {
		return h, "", fmt.Errorf("decoding %s: %w", key, err)
	}
	return h, v, nil
}

// live reports whether a job holds its locks: it exists and has not
// ended.
func (j *Jobs) live(ctx context.Context, id string) (bool, error) {
	job, err := j.ReadJob(ctx, id)
	if errors.Is(err, blob.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !job.State.Terminal(), nil
}

// ReleaseTarget gives back what job holds on its target; it is a no-op
// for a job that holds nothing, and best effort: a lock left behind is
// stale once its holder has ended.
func (j *Jobs) ReleaseTarget(ctx context.Context, job *events.Job) error {
	dir := j.targetDir(job.Target)
	if job.Kind != events.KindRestore {
		return j.Store.Delete(ctx, dir+"backup/"+job.ID)
	}
	return j.releaseRestore(ctx, dir+"restore", job.ID)
}

func (j *Jobs) releaseRestore(ctx context.Context, key, id string) error {
	h, v, err := j.readHolder(ctx, key)
	if errors.Is(err, blob.ErrNotExist) {
		return nil
	}
	if err != nil || h.Job != id || h.Released {
		return err
	}
	h.Released = true
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := j.Store.Replace(ctx, key, bytes.NewReader(body), v); err != nil && !errors.Is(err, blob.ErrConflict) {
		return err
	}
	return nil // a conflict: taken over as stale meanwhile; nothing of ours is left
}

// jobEnded runs once a job's record says it ended (done or failed), in
// the Update that said so: it gives back the job's target lock.
func (j *Jobs) jobEnded(ctx context.Context, job *events.Job) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = j.ReleaseTarget(ctx, job) // a lock left behind is stale: its holder ended
}

// TargetBusy reports the live job that would keep a job of kind off
// target, if any: for a restore any live job on the target, for a backup
// a live restore. target "" looks at every target (the api, which does
// not know the deployment's URL: a stack has one). It reads the locks;
// only AcquireTarget takes one.
func (j *Jobs) TargetBusy(ctx context.Context, target string, kind events.JobKind) (*TargetHolder, error) {
	prefix := j.targetsPrefix()
	if target != "" {
		prefix = j.targetDir(target)
	}
	var busy *TargetHolder
	errFound := errors.New("found")
	err := j.Store.List(ctx, prefix, func(info blob.Info) error {
		rest := strings.TrimPrefix(info.Key, j.targetsPrefix())
		_, name, _ := strings.Cut(rest, "/")
		if name != "restore" && (kind != events.KindRestore || !strings.HasPrefix(name, "backup/")) {
			return nil
		}
		var h TargetHolder
		if err := j.GetJSON(ctx, info.Key, &h); errors.Is(err, blob.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		if h.Released {
			return nil
		}
		live, err := j.live(ctx, h.Job)
		if err != nil || !live {
			return err
		}
		busy = &h
		return errFound
	})
	if errors.Is(err, errFound) {
		err = nil
	}
	return busy, err
}
