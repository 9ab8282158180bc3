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

// JobState is the job state machine:
// planned -> running -> assembling -> done | failed (failed from any state).
// Restore jobs go planned -> running -> done | failed; their progress
// through the restore order is Job.Phase.
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
	// Restore
	Archive          string   `json:"archive,omitempty"` // archive key or path to restore from
	SkipStorage      bool     `json:"skipStorage,omitempty"`
	SkipSecrets      bool     `json:"skipSecrets,omitempty"`
	Only             []string `json:"only,omitempty"`
	AllowSchemaDrift bool     `json:"allowSchemaDrift,omitempty"`
}

// Job is the job record, stored at <staging>/<id>/job.json. Only the
// scheduler and the assembler write it; workers write per-task status
// objects instead, so concurrent workers never overwrite each other.
type Job struct {
	ID      string   `json:"id"`
	Kind    JobKind  `json:"kind"`
	State   JobState `json:"state"`
	Trigger Trigger  `json:"trigger"`
	Target  string   `json:"target"` // EdgeBase base URL
	// Source is the archive's "source" field: cloudflare-edge, local or docker.
	Source    string    `json:"source,omitempty"`
	Options   Options   `json:"options"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Started is the backup's start time; the archive name derives from it.
	Started time.Time `json:"started"`
	// Phase is the restore phase currently open (see pkg/restore), and
	// PhaseTasks the number of tasks planned per phase.
	Phase      int   `json:"phase,omitempty"`
	PhaseTasks []int `json:"phaseTasks,omitempty"`
	// Tasks is how many tasks the plan holds (0 until planned).
	Tasks    int        `json:"tasks"`
	Summary  *Summary   `json:"summary,omitempty"`
	Errors   []JobError `json:"errors,omitempty"`
	Warnings []string   `json:"warnings,omitempty"`
	Archive  string     `json:"archive,omitempty"`  // key of the finished archive
	Manifest string     `json:"manifest,omitempty"` // key of its manifest
}

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
	// Input is the staging key a restore task reads.
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
}

// TaskState is a task's recorded outcome.
type TaskState string

const (
	TaskDone     TaskState = "done"
	TaskFailed   TaskState = "failed"
	TaskRetrying TaskState = "retrying"
)

// TaskStatus is written by a worker to <staging>/<job>/status/<task>.json.
type TaskStatus struct {
	Task     string    `json:"task"`
	Unit     string    `json:"unit"`
	Phase    int       `json:"phase,omitempty"`
	State    TaskState `json:"state"`
	Attempts int       `json:"attempts"`
	Rows     int64     `json:"rows,omitempty"`
	Objects  int64     `json:"objects,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Error    string    `json:"error,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	// Warning marks a failure that must not fail the job (resync, secrets).
	Warning  bool      `json:"warning,omitempty"`
	Finished time.Time `json:"finished"`
}

// Check asks the assembler to look at a job's stored state and advance it
// (open the next restore phase, assemble a finished backup, or re-check
// later).
type Check struct {
	Job string `json:"job"`
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
	Options Options `json:"options"`
}
