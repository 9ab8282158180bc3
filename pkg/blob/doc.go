// Package blob defines the shared vocabulary of the BlobStore adapters
// (pkg/blob/fs, pkg/blob/s3): the ErrNotExist sentinel that callers branch
// on, blob metadata, and the key rules every adapter enforces identically.
package blob
