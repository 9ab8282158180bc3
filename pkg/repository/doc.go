// Package repository stores EdgeBase backups as deduplicated, compressed and
// encrypted snapshots in any pipeline.BlobStore (docs/REPOSITORY.md is the
// format). Units and storage objects are cut into content-defined chunks
// (restic's chunker), each unique chunk is zstd-compressed, sealed with
// AES-256-GCM under the repository key and packed into pack files of a few
// MiB; an index maps chunk ids (HMAC-SHA256 of the plaintext) to packs, and a
// snapshot names the chunk lists of one backup. Saving streams with one pack
// buffer and one chunk buffer, so memory does not grow with the data; a
// snapshot can be written back out as a v1.1 archive (Export), and a v1.1
// archive read into one (Import).
package repository
