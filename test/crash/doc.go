// Package crash is the crash suite of the job engine: it runs backup and
// restore jobs in both runtimes' wiring (the embedded runner, and the
// serverless functions driven by an in-process SQS event source) over a
// fault-injecting store and queue (blobtest.Faulty, queuetest.Faulty),
// and fails each step of a clean run in turn: a failed operation, a
// write whose response is lost, and a crash just before or just after a
// write (nothing of the process runs afterwards; the embedded runtime
// restarts and resumes, the serverless one gets its messages back after
// their visibility timeout). Every run must end in a verified archive with
// the clean run's content, or a job failed naming its cause, never in a
// stuck job, a done job with a mismatched manifest, or a restore that
// stopped half-way without saying so.
package crash
