// Package serverless is edgevault's AWS Lambda runtime: the handlers of the
// scheduler, worker, assembler, api and drcopy functions, their Config
// (read from the environment named in pkg/lambdaenv) and the wiring that
// connects pkg/backup and pkg/restore to S3, SQS and Secrets Manager once per
// cold start. functions/<name>/main.go only calls into this package. The
// handlers are concurrency-safe, log JSON with the request id and emit
// CloudWatch EMF metrics (pkg/metrics).
package serverless
