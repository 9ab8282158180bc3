package serverless

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/restore"
)

// JobStatus is GET /backups/{id} and GET /restores/{id}.
type JobStatus struct {
	ID        string          `json:"id"`
	Kind      events.JobKind  `json:"kind"`
	State     events.JobState `json:"state"`
	Trigger   events.Trigger  `json:"trigger"`
	Target    string          `json:"target"`
	Options   events.Options  `json:"options"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Units     UnitCounts      `json:"units"`
	Bytes     int64           `json:"bytes"`
	Rows      int64           `json:"rows"`
	Objects   int64           `json:"objects"`
	// Errors name the units that failed for good (before the job is
	// marked failed too); Retrying the units whose last attempt failed.
	Errors   []events.JobError `json:"errors"`
	Retrying []UnitRetry       `json:"retrying,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	Archive  *ArchiveInfo      `json:"archive,omitempty"`
	// Restores only.
	Phase       *PhaseInfo `json:"phase,omitempty"`
	TargetState string     `json:"targetState,omitempty"`
}

// UnitCounts are a job's tasks by outcome, from the stored statuses.
type UnitCounts struct {
	Total    int `json:"total"`
	Done     int `json:"done"`
	Failed   int `json:"failed"`
	Retrying int `json:"retrying"`
	Pending  int `json:"pending"`
}

// UnitRetry is a unit whose last attempt failed and that will be retried.
type UnitRetry struct {
	Task     string `json:"task"`
	Unit     string `json:"unit"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
}

// ArchiveInfo locates a finished backup.
type ArchiveInfo struct {
	Key      string `json:"key"`
	Manifest string `json:"manifest"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256,omitempty"`
	Parts    int    `json:"parts,omitempty"`
}

// PhaseInfo is the restore phase open (or reached, for a finished job).
type PhaseInfo struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Tasks int    `json:"tasks"`
}

const maxListed = 50

func (h *API) get(ctx context.Context, kind events.JobKind, id string) (int, any, map[string]string, error) {
	if !validJobID(id) {
		return 0, nil, nil, notFound("no %s job %q", kind, id)
	}
	st, err := readJobStatus(ctx, h.base, id)
	if errors.Is(err, blob.ErrNotExist) || (err == nil && st.Kind != kind) {
		return 0, nil, nil, notFound("no %s job %q (a job just started appears once the scheduler has created it, within seconds)", kind, id)
	}
	if err != nil {
		return 0, nil, nil, err
	}
	return http.StatusOK, st, nil, nil
}

// readJobStatus reads a job's record and task statuses into a JobStatus.
// A missing job wraps blob.ErrNotExist.
func readJobStatus(ctx context.Context, b *base, id string) (*JobStatus, error) {
	job, err := b.jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	st := &JobStatus{ID: job.ID, Kind: job.Kind, State: job.State, Trigger: job.Trigger, Target: job.Target,
		Options: job.Options, CreatedAt: job.CreatedAt, UpdatedAt: job.UpdatedAt, Errors: []events.JobError{},
		Warnings: job.Warnings}
	st.Units.Total = job.Tasks
	listed := map[string]bool{}
	for _, e := range job.Errors {
		st.Errors = append(st.Errors, e)
		listed[e.Task] = true
	}
	if job.State == events.StateDone && job.Summary != nil {
		// A finished job's staging (statuses included) is gone; its
		// record keeps the figures.
		s := job.Summary
		st.Units.Done, st.Units.Failed = s.TasksDone, s.TasksFailed
		st.Bytes, st.Rows, st.Objects = s.Bytes, s.Rows, s.Objects
	} else {
		err := b.jobs.EachStatus(ctx, id, func(ts events.TaskStatus) error {
			switch ts.State {
			case events.TaskDone:
				st.Units.Done++
				st.Bytes += ts.Bytes
				st.Rows += ts.Rows
				st.Objects += ts.Objects
			case events.TaskFailed:
				st.Units.Failed++
				if !listed[ts.Task] && len(st.Errors) < maxListed {
					st.Errors = append(st.Errors, events.JobError{Task: ts.Task, Unit: ts.Unit, Message: ts.Error})
					listed[ts.Task] = true
				}
			case events.TaskRetrying:
				st.Units.Retrying++
				if len(st.Retrying) < maxListed {
					st.Retrying = append(st.Retrying, UnitRetry{Task: ts.Task, Unit: ts.Unit, Attempts: ts.Attempts, Error: ts.Error})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if job.Summary != nil && st.Units.Done == 0 && job.State == events.StateFailed {
			st.Units.Done, st.Units.Failed = max(st.Units.Done, job.Summary.TasksDone), max(st.Units.Failed, job.Summary.TasksFailed)
		}
	}
	st.Units.Pending = max(st.Units.Total-st.Units.Done-st.Units.Failed-st.Units.Retrying, 0)
	if job.Archive != "" {
		a := &ArchiveInfo{Key: job.Archive, Manifest: job.Manifest}
		if job.Summary != nil {
			a.Size = job.Summary.ArchiveSize
		}
		if man, err := b.jobs.ReadManifest(ctx, job.Archive); err == nil {
			a.SHA256, a.Parts, a.Size = man.SHA256, len(man.Parts), man.Size
		}
		st.Archive = a
	}
	if job.Kind == events.KindRestore {
		p := &PhaseInfo{Index: job.Phase, Name: restore.PhaseName(job.Phase)}
		if job.Phase < len(job.PhaseTasks) {
			p.Tasks = job.PhaseTasks[job.Phase]
		}
		st.Phase = p
		if job.State == events.StateFailed {
			st.TargetState = restore.TargetState(job)
		}
	}
	return st, nil
}
