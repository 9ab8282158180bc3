// Package blob defines the shared vocabulary of the BlobStore adapters
// (pkg/blob/fs, pkg/blob/s3): the sentinels callers branch on (ErrNotExist,
// ErrExist, ErrConflict), blob metadata and versions, and the key rules
// every adapter enforces identically.
package blob
