// Package queuetest is the behaviour suite of the pipeline.Queue port. Every
// adapter's tests call Run, so the in-process queue and SQS are held to the
// same delivery contract: at least once, visibility timeout, delays,
// attempts and Nack.
package queuetest
