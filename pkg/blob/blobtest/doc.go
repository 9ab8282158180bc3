// Package blobtest is the behaviour suite of the pipeline.BlobStore and
// pipeline.Composer ports. Every adapter's tests call Run, so the embedded and
// the serverless stores are held to the same contract.
package blobtest
