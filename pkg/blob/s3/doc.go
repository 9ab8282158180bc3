// Package s3 is the BlobStore (and Composer) of the serverless runtime, over
// one bucket and key prefix of Amazon S3. Bodies of unknown size stream
// through a bounded number of part buffers into multipart uploads, which
// are aborted on failure so a blob is either complete or absent; Create is
// a conditional write (If-None-Match: *); Compose concatenates with
// UploadPartCopy and merges sources below the 5 MiB part minimum. The
// caller builds the *s3.Client (see internal/awsconfig); errors that retrying
// cannot fix are marked pipeline.Permanent.
package s3
