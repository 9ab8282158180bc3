// Package blobtest is the behaviour suite of the pipeline.BlobStore and
// pipeline.Composer ports and their fault injector. Every adapter's tests
// call Run, so the embedded and the serverless stores are held to the same
// contract, compare-and-swap included. Faulty wraps any store to fail the
// Nth call of an operation before or after it takes effect, delay it, or
// kill its caller, and records every call so a test can fail each step of
// a job in turn.
package blobtest
