// Package mem is the in-process Queue of the embedded runtime. It follows
// SQS standard-queue semantics closely enough that the pipeline behaves the
// same as under Lambda: a visibility timeout hides received messages until
// they are acked, nacked or time out; sends may be delayed; every delivery
// counts an attempt; and an optional receive limit moves poison messages to
// a dead-letter list that tests can inspect. It keeps nothing on disk.
package mem
