// Package s3test holds test doubles for the S3 adapter: a reverse proxy
// that puts in front of an S3 emulator (moto) the bucket policy checks the
// emulator does not enforce, such as the DR bucket's refusal of writes
// that could overwrite an object.
package s3test
