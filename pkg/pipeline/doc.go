// Package pipeline is edgevault's job engine: one state machine that runs
// backups and restores embedded (an in-process queue, a local directory)
// and serverless (SQS, S3, Lambda), built only from two ports, BlobStore
// and Queue, so that every runtime runs the same code.
//
// # The job
//
// A job is a record (Jobs, job.json) changed only by compare-and-swap
// (Jobs.Update: read, change, BlobStore.Replace against the version read,
// again on conflict), plus objects that are each created once. Its states:
//
//	planned ──Launch──▶ running ──last phase complete──▶ assembling ──▶ done
//	   │                   │                                  │
//	   └──────────────┬────┴──────────────────────────────────┘
//	                  ▼
//	                failed
//
// The steps:
//
//   - Prepare creates the record (planned, with a planning lease), has the
//     domain's Planner write the task list (plan/tasks.ndjson) and commits
//     it by recording PhaseTasks. A retried start finds the record: a
//     committed plan is kept; an uncommitted one whose lease expired is
//     planned again from scratch; a permanent planning error fails the job,
//     any other leaves it planned for the retry.
//   - Launch marks the job running, queues its first check (serverless)
//     and sends the open phase. It may run again at any time: it re-sends
//     what may be missing and never changes a finished job.
//   - Tasks are grouped in phases (a restore's order; a backup has one).
//     A phase is sent under a dispatch lease, recorded as QueuedPhase once
//     every message is out; a phase opened but not fully queued is sent
//     again by whoever next looks (Advance), from the plan, the tasks
//     already done filtered out. Duplicates are harmless: see Worker.
//   - Worker.Process runs one delivery. Each delivery writes under its own
//     output prefix (parts/<task>/<delivery>/), then creates the task's
//     outcome (done/<phase>/<task>.json) naming that prefix: the first
//     delivery to create it wins, and a later one discards its parts, so
//     an outcome and the parts it names always come from one delivery.
//     Run-once tasks (a restore's wipe) also hold a lease object, taken
//     by create or by compare-and-swap when stale. A permanent error or
//     the last attempt creates failed/<task>.json instead.
//   - Advance (a check message, the embedded Runner, the watchdog) looks
//     at the record once and moves it on: fails the job on a failed task
//     or a timeout, opens the next phase when the open one's done/ count
//     (a listing, never a read of every outcome) reaches PhaseTasks, and
//     finishes after the last phase. Checks carry a sequence number: a
//     check queues its successor before claiming its number by
//     compare-and-swap, so the chain survives a crash and, of duplicated
//     checks, exactly one acts.
//   - Finishing (assembling) runs the domain's Finisher under a finish
//     lease that it renews. The assembler is deterministic (the archive's
//     name and timestamp come from the job's Started time, members in plan
//     order), so two assemblies that overlap write the same bytes; the
//     done record is written by compare-and-swap, and staging is deleted
//     only after it is stored.
//
// # Why every step can be repeated
//
// Every transition is a compare-and-swap of the record followed by work
// that converges when repeated (creates that lose to an existing object,
// sends of messages whose duplicates the worker drops, deletes of what is
// gone). A crash, a failed write or a lost answer between any two steps
// leaves a record from which the next Launch, Advance or retried message
// continues; the leases (planning, dispatch, finish, task) only decide
// who acts first and expire, so a dead holder never blocks a job. The
// crash suite in test/crash kills, fails and loses every store and queue
// operation of a backup and a restore, in both runtimes, one at a time,
// and checks that each run ends done with the same archive or failed with
// a named error, never stuck.
//
// # Domains
//
// A Domain (pkg/backup, pkg/restore) supplies the Planner, the task
// Handlers by kind and the Finisher; pkg/edgevault composes them with the
// adapters (pkg/blob/*, pkg/queue/*) into an Engine.
package pipeline
