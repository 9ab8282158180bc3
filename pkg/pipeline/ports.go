package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/edgevault/edgevault/pkg/blob"
)

// The ports: what the engine needs from its surroundings. Adapters live in
// packages named after what they adapt (pkg/blob/fs, pkg/blob/s3,
// pkg/queue/mem, pkg/queue/sqs) and pass the behaviour suites in
// pkg/blob/blobtest and pkg/queue/queuetest.
//
// Failures, one vocabulary for every port: a "not found" wraps
// blob.ErrNotExist, a lost create race blob.ErrExist, a lost
// compare-and-swap blob.ErrConflict. An adapter marks an error that
// retrying cannot fix (access denied, a bucket or queue that does not
// exist, a request the service refuses as invalid) with Permanent, once,
// after its SDK's own retries; every other error is transient, and the
// engine retries it through redelivery, never in a loop of its own.

// BlobStore holds job records, staging parts and finished archives. Keys are
// '/'-separated and pass blob.ValidateKey; no key may be a '/'-prefix of
// another (a file system cannot hold both "a" and "a/b").
type BlobStore interface {
	// Put stores r under key. The blob becomes visible only once r has been
	// read to EOF without error (write+rename, single PUT or completed
	// multipart upload); a failed Put leaves any previous blob untouched.
	Put(ctx context.Context, key string, r io.Reader) error
	// Create is Put that fails with blob.ErrExist when key already exists;
	// of concurrent Creates of one key exactly one succeeds. It is what
	// fences state transitions that must happen once.
	Create(ctx context.Context, key string, r io.Reader) error
	// ReadVersion opens key and reports the version of what it reads.
	ReadVersion(ctx context.Context, key string) (io.ReadCloser, blob.Version, error)
	// Replace is Put that succeeds only while key still holds version v;
	// otherwise (replaced, or deleted, since v was read) it fails with
	// blob.ErrConflict and changes nothing. Of concurrent Replaces of one
	// version exactly one succeeds: the compare-and-swap of job records.
	// A version may name content rather than a write (S3's ETag of a
	// single upload is its MD5): callers that must tell every write apart
	// make each write's bytes unique, as job records do (Job.Revision).
	Replace(ctx context.Context, key string, r io.Reader, v blob.Version) error
	// Get opens key; a missing key gives an error wrapping blob.ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes of key from offset; length < 0 reads to
	// EOF. A range past the end is cut at the end; a negative offset is an
	// error.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat reports size; a missing key wraps blob.ErrNotExist.
	Stat(ctx context.Context, key string) (blob.Info, error)
	// List calls fn for every key with the prefix, in byte-wise key order,
	// without holding the whole listing in memory.
	List(ctx context.Context, prefix string, fn func(blob.Info) error) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Composer is implemented by stores that can concatenate blobs without
// streaming them through the caller (S3 UploadPartCopy, a local file copy).
type Composer interface {
	// Compose writes the concatenation of srcs to dst atomically. dst may be
	// one of srcs; a missing source wraps blob.ErrNotExist and leaves dst
	// untouched.
	Compose(ctx context.Context, dst string, srcs []string) error
}

// Message is one queue message. Body is an encoded events.Envelope.
type Message struct {
	Body  []byte
	Delay time.Duration // delivery delay (SQS allows up to 15 minutes)
}

// CheckBody reports why SQS would refuse the body of message i of a Send:
// empty, larger than max bytes, or not UTF-8 made only of the characters
// SQS accepts (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
// #x10000-#x10FFFF). Adapters call it so every queue refuses the same
// bodies.
func (m Message) CheckBody(i, max int) error {
	if len(m.Body) == 0 {
		return fmt.Errorf("message %d has an empty body", i)
	}
	if len(m.Body) > max {
		return fmt.Errorf("message %d body of %d bytes exceeds %d", i, len(m.Body), max)
	}
	for b := m.Body; len(b) > 0; {
		r, n := utf8.DecodeRune(b)
		ok := r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
		if !ok || r == utf8.RuneError && n <= 1 {
			return fmt.Errorf("message %d body is not UTF-8 text that SQS accepts", i)
		}
		b = b[n:]
	}
	return nil
}

// Delivery is a received message.
type Delivery struct {
	Message
	ID      string // adapter message id
	Receipt string // handle for Ack/Nack
	Attempt int    // 1 on first delivery
}

// Queue carries tasks and check messages between the scheduler, workers
// and the controller. Delivery is at least once, in no particular order.
type Queue interface {
	// Send enqueues messages (adapters batch as the service allows). When
	// it fails, any prefix of msgs may have been sent.
	Send(ctx context.Context, msgs ...Message) error
	// Receive waits up to wait for at most max messages. Received messages
	// are hidden from other receivers until acked, nacked or their
	// visibility timeout expires.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Delivery, error)
	// Ack deletes a delivered message.
	Ack(ctx context.Context, d Delivery) error
	// Nack makes a delivered message visible again after delay.
	Nack(ctx context.Context, d Delivery, delay time.Duration) error
}
