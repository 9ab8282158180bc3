// Package edgevault is the composition root: New registers the backup and
// restore job kinds (pkg/backup, pkg/restore) with the engine
// (pkg/pipeline) over the stores, queues and clients a runtime supplies.
// The CLI (embedded: a local directory and an in-process queue) and every
// Lambda function (S3, SQS, Secrets Manager) build their engine with it,
// so both runtimes run the same pipeline by construction.
package edgevault
