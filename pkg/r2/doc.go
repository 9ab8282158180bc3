// Package r2 reads and writes EdgeBase's storage bucket through R2's
// S3-compatible API (https://<account>.r2.cloudflarestorage.com, region
// auto) instead of through the EdgeBase Worker: paged ListObjectsV2,
// GetObject with the stored content type, PutObject and DeleteObjects.
// It is the "R2 direct" adapter of the storage port that pkg/backup and
// pkg/restore declare; the admin API (pkg/edgebase) is the other one. The
// object keys are the keys the admin API reports (dump-storage lists the
// bucket's own keys, "<bucket>/<path>").
package r2
