package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// JobKind says what a job does.
type JobKind string

const (
	KindBackup  JobKind = "backup"
	KindRestore JobKind = "restore"
)

// JobState is the job state machine (pkg/pipeline drives it):
// planned -> running -> assembling -> done | failed (failed from any
// state). A job runs its phases in order (Job.Phase; a backup has one, a
// restore follows the restore order); "assembling" is the finish step
// after the last phase (a backup's archive), which jobs without one skip.
type JobState string

const (
	StatePlanned    JobState = "planned"
	StateRunning    JobState = "running"
	StateAssembling JobState = "assembling"
	StateDone       JobState = "done"
	StateFailed     JobState = "failed"
)

// Terminal reports whether no further transition can happen.
func (s JobState) Terminal() bool { return s == StateDone || s == StateFailed }

// Trigger records who started a job.
type Trigger string

const (
	TriggerCLI      Trigger = "cli"
	TriggerSchedule Trigger = "schedule"
	TriggerAPI      Trigger = "api"
)

// Options are the user's choices for a job.
type Options struct {
	// Backup
	IncludeStorage bool `json:"includeStorage,omitempty"`
	IncludeSecrets bool `json:"includeSecrets,omitempty"`
	// Repository marks a backup that ends as a snapshot in the repository
	// (set by a planner that has one) instead of an archive; its workers
	// and assembler follow the job, not their own settings.
	Repository bool `json:"repository,omitempty"`
	// Restore
	Archive          string   `json:"archive,omitempty"` // archive key or path to restore from
	SkipStorage      bool     `json:"skipStorage,omitempty"`
	SkipSecrets      bool     `json:"skipSecrets,omitempty"`
	Only             []string `json:"only,omitempty"`
	AllowSchemaDrift bool     `json:"allowSchemaDrift,omitempty"`
	// FullStorage makes a restore wipe R2 and upload every object, instead
	// of keeping the objects the target already holds unchanged.
	FullStorage bool `json:"fullStorage,omitempty"`
}

// Job is the job record, stored at <staging>/<id>/job.json. It changes
// only by compare-and-swap on its stored version (pipeline.Jobs.Update);
// workers never write it: they record each task's outcome in objects of
// their own.
type Job struct {
	// Revision counts the record's writes; it makes every stored version
	// distinct, so a compare-and-swap can never mistake a later record for
	// an earlier one with the same content.
	Revision int      `json:"revision"`
	ID       string   `json:"id"`
	Kind     JobKind  `json:"kind"`
	State    JobState `json:"state"`
	Trigger  Trigger  `json:"trigger"`
	// RequestedBy is the caller who asked for the job, when one did: the
	// IAM principal of an API request (its ARN).
	RequestedBy string `json:"requestedBy,omitempty"`
	Target      string `json:"target"` // EdgeBase base URL
	// Source is the archive's "source" field: cloudflare-edge, local or docker.
	Source    string    `json:"source,omitempty"`
	Options   Options   `json:"options"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Started is the backup's start time; the archive name derives from it.
	Started time.Time `json:"started"`
	// Phase is the phase currently open, and PhaseTasks the number of
	// tasks planned per phase.
	Phase      int   `json:"phase,omitempty"`
	PhaseTasks []int `json:"phaseTasks,omitempty"`
	// Tasks is how many tasks the plan holds (0 until planned).
	Tasks int `json:"tasks"`
	// QueuedPhase is the last phase whose tasks were all sent (-1: none
	// yet). A phase that is open but not queued is sent again by whoever
	// sees it next (a retried start, a check, the watchdog) once no live
	// Dispatching lease says someone is sending it; workers drop the
	// duplicates.
	QueuedPhase int `json:"queuedPhase"`
	// Check is the sequence number of the next check message that may act
	// on the job; CheckedAt when one last did. A check claims its number
	// by compare-and-swap, so duplicated check messages die out.
	Check     int       `json:"check,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Planning, Dispatching and Finishing fence the steps that must run
	// once at a time: planning the job, sending a phase's tasks, and its
	// finish step (assembling the archive).
	Planning    *Lease     `json:"planning,omitempty"`
	Dispatching *Lease     `json:"dispatching,omitempty"`
	Finishing   *Lease     `json:"finishing,omitempty"`
	Summary     *Summary   `json:"summary,omitempty"`
	Errors      []JobError `json:"errors,omitempty"`
	// Warnings keeps the first MaxWarnings warnings; WarningsOmitted
	// counts the rest.
	Warnings        []string `json:"warnings,omitempty"`
	WarningsOmitted int      `json:"warningsOmitted,omitempty"`
	Archive         string   `json:"archive,omitempty"`  // key of the finished archive
	Manifest        string   `json:"manifest,omitempty"` // key of its manifest
	// Snapshot is the id of the repository snapshot a repository-mode
	// backup wrote (instead of Archive and Manifest).
	Snapshot string `json:"snapshot,omitempty"`
}

// MaxWarnings bounds the warnings a job record or a task outcome keeps.
const MaxWarnings = 50

// AddWarnings appends warnings to a job, keeping at most MaxWarnings and
// counting the rest.
func (j *Job) AddWarnings(ws ...string) {
	for _, w := range ws {
		if len(j.Warnings) < MaxWarnings {
			j.Warnings = append(j.Warnings, w)
		} else {
			j.WarningsOmitted++
		}
	}
}

// Lease is held by one invocation until it ends or Until passes; a later
// invocation may take over an expired lease.
type Lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// Live reports whether the lease still protects its holder at now.
func (l *Lease) Live(now time.Time) bool { return l != nil && now.Before(l.Until) }

// JobError names the unit that failed.
type JobError struct {
	Task    string `json:"task"`
	Unit    string `json:"unit"`
	Message string `json:"message"`
}

func (e JobError) String() string { return fmt.Sprintf("%s: %s", e.Unit, e.Message) }

// Summary is the figures of a finished (or progressing) job.
type Summary struct {
	TasksDone   int   `json:"tasksDone"`
	TasksFailed int   `json:"tasksFailed"`
	DOs         int   `json:"dos"`
	Namespaces  int   `json:"dataNamespaces"`
	Rows        int64 `json:"rows"`
	Objects     int64 `json:"objects"`
	Bytes       int64 `json:"bytes"` // payload bytes moved (dumps + objects)
	// Skipped and Deleted sum the tasks' counts (a restore's storage:
	// objects kept unchanged, objects deleted).
	Skipped     int64 `json:"skipped,omitempty"`
	Deleted     int64 `json:"deleted,omitempty"`
	ArchiveSize int64 `json:"archiveSize,omitempty"`
}

// TaskKind names a unit of work.
type TaskKind string

// Backup task kinds.
const (
	TaskControlD1 TaskKind = "control-d1"
	TaskAuthD1    TaskKind = "auth-d1"
	TaskDO        TaskKind = "do"
	TaskData      TaskKind = "data"
	TaskConfig    TaskKind = "config"
	TaskSecrets   TaskKind = "secrets"
	TaskStorage   TaskKind = "storage" // one R2 page range
)

// Restore task kinds.
const (
	TaskPrime            TaskKind = "prime"              // touch D1 tables a fresh target lacks
	TaskRestoreControlD1 TaskKind = "restore-control-d1" // with wipe
	TaskRestoreAuthD1    TaskKind = "restore-auth-d1"    // with wipe
	TaskWipeDO           TaskKind = "wipe-do"            // one orphan
	TaskRestoreDO        TaskKind = "restore-do"
	TaskRestoreData      TaskKind = "restore-data" // with wipe
	TaskWipeStorage      TaskKind = "wipe-storage"
	TaskPutStorage       TaskKind = "put-storage" // one page range
	TaskResync           TaskKind = "resync-users-public"
	TaskRestoreSecrets   TaskKind = "restore-secrets"
)

// Task is one unit of work. Its ID is deterministic within the job, so a
// redelivered task writes the same part and status keys.
type Task struct {
	Job   string   `json:"job"`
	ID    string   `json:"id"`
	Kind  TaskKind `json:"kind"`
	Phase int      `json:"phase,omitempty"`
	// Unit is the human name: a DO name, a namespace, "storage[3]", ...
	Unit      string `json:"unit"`
	DOName    string `json:"doName,omitempty"`
	DOType    string `json:"doType,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Range is the page-range index of storage tasks.
	Range int `json:"range,omitempty"`
	// Input is the staging key a restore task reads, or the key-range
	// file of an R2-direct backup storage range.
	Input string `json:"input,omitempty"`
	// SkipTables are tables of the input a restore leaves out (FTS index
	// tables the target's triggers rebuild).
	SkipTables []string `json:"skipTables,omitempty"`
	// Skip is how many leading objects of a storage range are uploaded by
	// another task (a spool) and skipped here.
	Skip int64 `json:"skip,omitempty"`
	// Create marks an instance DO the target does not have yet: it is
	// created before its restore (which would otherwise be refused with
	// needsCreate after uploading the whole body).
	Create bool `json:"create,omitempty"`
	// Wipes marks tasks that delete data: they run only while their phase
	// is open (a late duplicate would destroy restored data).
	Wipes bool `json:"wipes,omitempty"`
	// First marks a long task that is queued before the others of its
	// phase, so that it does not start last, after hundreds of short ones
	// (a storage range beside the DO dumps).
	First bool `json:"first,omitempty"`
}

// TaskState is a task's recorded outcome.
type TaskState string

const (
	TaskDone     TaskState = "done"
	TaskFailed   TaskState = "failed"
	TaskRetrying TaskState = "retrying"
)

// TaskStatus is a task's outcome as a worker records it: once, when the
// task is done or failed for good, and as the last failed attempt while it
// is retried (pipeline.Jobs names the keys).
type TaskStatus struct {
	Task     string    `json:"task"`
	Unit     string    `json:"unit"`
	Phase    int       `json:"phase,omitempty"`
	State    TaskState `json:"state"`
	Attempts int       `json:"attempts"`
	Rows     int64     `json:"rows,omitempty"`
	Objects  int64     `json:"objects,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	// Skipped counts objects found already in place and not written
	// again; Deleted counts objects the task deleted.
	Skipped  int64    `json:"skipped,omitempty"`
	Deleted  int64    `json:"deleted,omitempty"`
	Error    string   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// WarningsOmitted counts warnings past MaxWarnings.
	WarningsOmitted int `json:"warningsOmitted,omitempty"`
	// Warning marks a failure that must not fail the job (resync, secrets).
	Warning bool `json:"warning,omitempty"`
	// Output is the key prefix the delivery that finished the task wrote
	// its outputs under; only that delivery's outputs are ever used.
	Output   string    `json:"output,omitempty"`
	Finished time.Time `json:"finished"`
}

// Check asks the controller to look at a job's stored state and advance it
// (re-send a phase that was not fully queued, open the next phase,
// assemble a finished backup, fail a job that cannot progress), then to
// check again later. Seq must equal the job's Check to act.
type Check struct {
	Job string `json:"job"`
	Seq int    `json:"seq,omitempty"`
}

// Envelope is the body of every queue message.
type Envelope struct {
	Task  *Task  `json:"task,omitempty"`
	Check *Check `json:"check,omitempty"`
}

// ErrBadMessage marks a message that can never be processed.
var ErrBadMessage = errors.New("events: malformed message")

// Decode parses and checks an envelope.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch {
	case e.Task != nil && e.Check != nil, e.Task == nil && e.Check == nil:
		return e, fmt.Errorf("%w: exactly one of task or check must be set", ErrBadMessage)
	case e.Task != nil && (e.Task.Job == "" || e.Task.ID == "" || e.Task.Kind == ""):
		return e, fmt.Errorf("%w: task needs job, id and kind", ErrBadMessage)
	case e.Check != nil && e.Check.Job == "":
		return e, fmt.Errorf("%w: check needs a job", ErrBadMessage)
	}
	return e, nil
}

// Encode serializes an envelope.
func (e Envelope) Encode() ([]byte, error) { return json.Marshal(e) }

// StartRequest is the scheduler's input when invoked directly (by the api
// function or a test); EventBridge invokes it with a scheduled event whose
// detail holds the same fields.
type StartRequest struct {
	JobID   string  `json:"jobId,omitempty"`
	Kind    JobKind `json:"kind"`
	Trigger Trigger `json:"trigger,omitempty"`
	// RequestedBy becomes Job.RequestedBy.
	RequestedBy string  `json:"requestedBy,omitempty"`
	Options     Options `json:"options"`
}
