// Package snapshot takes backups of an EdgeBase deployment into a
// repository (pkg/repository): the database units come from a storage-less
// v1.1 document the engine wrote (pkg/backup; DO and D1 dumps have no
// change feed, so they are fetched every time and deduplicated as chunks),
// and the storage table is built here, incrementally: an object whose key,
// size and etag equal the parent snapshot's entry is not fetched at all.
package snapshot
