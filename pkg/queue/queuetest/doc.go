// Package queuetest is the behaviour suite of the pipeline.Queue port and
// its fault injector. Every adapter's tests call Run, so the in-process
// queue and SQS are held to the same delivery contract: at least once,
// visibility timeout, delays, attempts and Nack. Faulty wraps any queue
// to fail or cut short sends, fail receives, acks and nacks, and deliver
// every message twice and out of order.
package queuetest
