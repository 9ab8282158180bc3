// Package archive reads, writes and verifies EdgeBase v1.1 backups: the
// single JSON document (edgebase-backup-<TS>.json) and the .tar.gz that
// carries it as backup.json next to storage/<R2 key> members. Everything
// streams section by section, DO by DO, table by table and object by
// object, so memory stays flat however large the backup is: JSONWriter
// assembles the document from raw dump replies it copies verbatim while
// validating their shape, the tar.gz is built from independent gzip members
// (a head, any number of storage members, a trailer) that concatenate into
// one valid archive, and Read/Verify check a file of ours or of the official
// CLI in one sequential pass, handing raw section bytes and storage objects
// to a Visitor.
package archive
