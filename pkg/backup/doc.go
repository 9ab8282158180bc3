// Package backup is the domain of edgevault's pipeline: jobs, plans and
// tasks, the scheduler, worker and assembler services, and the ports
// (BlobStore, Queue, SecretStore) they run on. The same code runs embedded
// (cmd/edgevault with pkg/queue/mem and pkg/blob/fs) and serverless
// (functions/* with pkg/queue/sqs and pkg/blob/s3).
package backup
