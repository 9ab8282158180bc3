package serverless

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/restore"
)

// JobStatus is GET /backups/{id} and GET /restores/{id}.
type JobStatus struct {
	ID      string          `json:"id"`
	Kind    events.JobKind  `json:"kind"`
	State   events.JobState `json:"state"`
	Trigger events.Trigger  `json:"trigger"`
	// RequestedBy is the caller who started the job through the api.
	RequestedBy string         `json:"requestedBy,omitempty"`
	Target      string         `json:"target"`
	Options     events.Options `json:"options"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
	Units       UnitCounts     `json:"units"`
	Bytes       int64          `json:"bytes"`
	Rows        int64          `json:"rows"`
	Objects     int64          `json:"objects"`
	// Errors name the units that failed for good (before the job is
	// marked failed too); Retrying the units whose last attempt failed.
	Errors   []events.JobError `json:"errors"`
	Retrying []UnitRetry       `json:"retrying,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	Archive  *ArchiveInfo      `json:"archive,omitempty"`
	// Snapshot is the repository snapshot a repository-mode backup wrote.
	Snapshot string `json:"snapshot,omitempty"`
	// ProvenAt is when a drill of the archive passed (drill function).
	ProvenAt *time.Time `json:"provenAt,omitempty"`
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
	if !pipeline.ValidJobID(id) {
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

// readJobStatus reads a job's record and the counts of its task outcomes
// into a JobStatus. Outcomes are counted by listing, never read one by
// one (a job may have a hundred thousand tasks): only the failures and
// retries it lists are read. A missing job wraps blob.ErrNotExist.
func readJobStatus(ctx context.Context, b *base, id string) (*JobStatus, error) {
	job, err := b.jobs.ReadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	st := &JobStatus{Snapshot: job.Snapshot, ID: job.ID, Kind: job.Kind, State: job.State, Trigger: job.Trigger, RequestedBy: job.RequestedBy, Target: job.Target,
		Options: job.Options, CreatedAt: job.CreatedAt, UpdatedAt: job.UpdatedAt, Errors: []events.JobError{},
		Warnings: job.Warnings}
	st.Units.Total = job.Tasks
	if s := job.Summary; s != nil && job.State.Terminal() {
		// A finished job's figures are in its record (a done job's staging,
		// outcomes included, is gone).
		st.Units.Done, st.Units.Failed = s.TasksDone, s.TasksFailed
		st.Bytes, st.Rows, st.Objects = s.Bytes, s.Rows, s.Objects
	}
	listed := map[string]bool{}
	for _, e := range job.Errors {
		st.Errors = append(st.Errors, e)
		listed[e.Task] = true
	}
	if !job.State.Terminal() {
		if err := countOutcomes(ctx, b, job, st, listed); err != nil {
			return nil, err
		}
	}
	st.Units.Pending = max(st.Units.Total-st.Units.Done-st.Units.Failed-st.Units.Retrying, 0)
	if job.Archive != "" {
		a := &ArchiveInfo{Key: job.Archive, Manifest: job.Manifest}
		if job.Summary != nil {
			a.Size = job.Summary.ArchiveSize
		}
		if man, err := backup.ReadManifest(ctx, b.store, job.Archive); err == nil {
			a.SHA256, a.Parts, a.Size = man.SHA256, len(man.Parts), man.Size
		}
		st.Archive = a
		// A report of other bytes than the manifest names proves nothing.
		if rep, err := ReadDrillReport(ctx, b.store, job.Archive); err == nil && rep != nil && rep.Passed && rep.ArchiveSHA256 == a.SHA256 {
			st.ProvenAt = &rep.FinishedAt
		}
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

// countOutcomes fills the unit counts of a running job.
func countOutcomes(ctx context.Context, b *base, job *events.Job, st *JobStatus, listed map[string]bool) error {
	for ph := range job.PhaseTasks {
		n, err := b.jobs.CountDone(ctx, job.ID, ph)
		if err != nil {
			return err
		}
		st.Units.Done += n
	}
	nFailed, failed, err := b.jobs.Failures(ctx, job.ID, maxListed)
	if err != nil {
		return err
	}
	st.Units.Failed = nFailed
	for _, f := range failed {
		if !listed[f.Task] {
			st.Errors = append(st.Errors, events.JobError{Task: f.Task, Unit: f.Unit, Message: f.Error})
		}
	}
	_, retries, err := b.jobs.Retries(ctx, job.ID, maxListed)
	if err != nil {
		return err
	}
	for _, r := range retries {
		// A task whose retry since succeeded still has its retry record.
		if _, done, err := b.jobs.Done(ctx, events.Task{Job: job.ID, ID: r.Task, Phase: r.Phase}); err == nil && !done {
			st.Units.Retrying++
			st.Retrying = append(st.Retrying, UnitRetry{Task: r.Task, Unit: r.Unit, Attempts: r.Attempts, Error: r.Error})
		}
	}
	return nil
}
