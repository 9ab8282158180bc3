package sqs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/edgevault/edgevault/pkg/backup"
)

var _ backup.Queue = (*Queue)(nil)

// SQS limits.
const (
	MaxBatch      = 10
	MaxBatchBytes = 256 << 10 // per message and per SendMessageBatch
	MaxDelay      = 15 * time.Minute
	MaxWait       = 20 * time.Second
	MaxVisibility = 12 * time.Hour
)

// Options tune a Queue; the zero value gives the defaults.
type Options struct {
	// VisibilityTimeout is requested on every Receive; 0 keeps the
	// queue's configured default.
	VisibilityTimeout time.Duration
}

// Queue sends to and receives from one SQS queue.
type Queue struct {
	client *sqs.Client
	url    string
	o      Options
}

// New returns a Queue for queueURL.
func New(client *sqs.Client, queueURL string, o Options) (*Queue, error) {
	if client == nil {
		return nil, errors.New("sqs: nil client")
	}
	if queueURL == "" {
		return nil, errors.New("sqs: empty queue URL")
	}
	if o.VisibilityTimeout < 0 || o.VisibilityTimeout > MaxVisibility {
		return nil, fmt.Errorf("sqs: visibility timeout %v outside 0..%v", o.VisibilityTimeout, MaxVisibility)
	}
	return &Queue{client: client, url: queueURL, o: o}, nil
}

// Send implements backup.Queue with SendMessageBatch calls of at most
// MaxBatch messages and MaxBatchBytes. It stops at the first batch with a
// failure; messages of earlier batches stay sent (at least once).
func (q *Queue) Send(ctx context.Context, msgs ...backup.Message) error {
	for i, m := range msgs {
		if err := m.CheckBody(i, MaxBatchBytes); err != nil {
			return fmt.Errorf("sqs: send: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: send: %w", err)
	}
	for start := 0; start < len(msgs); {
		end, size := start, 0
		for end < len(msgs) && end-start < MaxBatch && size+len(msgs[end].Body) <= MaxBatchBytes {
			size += len(msgs[end].Body)
			end++
		}
		if err := q.sendBatch(ctx, start, msgs[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// sendBatch sends msgs, which start at index first of the Send call; entry
// ids are those indexes so failures name the caller's messages.
func (q *Queue) sendBatch(ctx context.Context, first int, msgs []backup.Message) error {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = types.SendMessageBatchRequestEntry{
			Id:           aws.String(strconv.Itoa(first + i)),
			MessageBody:  aws.String(string(m.Body)),
			DelaySeconds: seconds(m.Delay, MaxDelay),
		}
	}
	out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: entries})
	if err != nil {
		return fmt.Errorf("sqs: send messages %d..%d: %w", first, first+len(msgs)-1, classify(err))
	}
	if len(out.Failed) == 0 {
		return nil
	}
	var b strings.Builder
	transient := true
	for i, f := range out.Failed {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "message %s: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
		transient = transient && !f.SenderFault
	}
	err = fmt.Errorf("sqs: send: %d of %d messages failed: %s", len(out.Failed), len(msgs), b.String())
	if transient {
		return &transientError{err}
	}
	return err
}

// Receive implements backup.Queue. max is clamped to 1..MaxBatch and wait,
// rounded up to whole seconds, to 0..MaxWait.
func (q *Queue) Receive(ctx context.Context, limit int, wait time.Duration) ([]backup.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqs: receive: %w", err)
	}
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q.url),
		MaxNumberOfMessages:         int32(min(MaxBatch, max(1, limit))),
		WaitTimeSeconds:             seconds(wait, MaxWait),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	}
	if q.o.VisibilityTimeout > 0 {
		in.VisibilityTimeout = seconds(q.o.VisibilityTimeout, MaxVisibility)
	}
	out, err := q.client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("sqs: receive: %w", classify(err))
	}
	ds := make([]backup.Delivery, 0, len(out.Messages))
	for _, m := range out.Messages {
		attempt, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if err != nil || attempt < 1 {
			attempt = 1
		}
		ds = append(ds, backup.Delivery{
			Message: backup.Message{Body: []byte(aws.ToString(m.Body))},
			ID:      aws.ToString(m.MessageId),
			Receipt: aws.ToString(m.ReceiptHandle),
			Attempt: attempt,
		})
	}
	return ds, nil
}

// Ack implements backup.Queue with DeleteMessage.
func (q *Queue) Ack(ctx context.Context, d backup.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: ack %s: %w", d.ID, err)
	}
	_, err := q.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: aws.String(d.Receipt)})
	if err != nil {
		return fmt.Errorf("sqs: ack %s: %w", d.ID, classify(err))
	}
	return nil
}

// Nack implements backup.Queue with ChangeMessageVisibility; delay is
// rounded up to whole seconds and clamped to 0..MaxVisibility.
func (q *Queue) Nack(ctx context.Context, d backup.Delivery, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: nack %s: %w", d.ID, err)
	}
	_, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(q.url),
		ReceiptHandle:     aws.String(d.Receipt),
		VisibilityTimeout: seconds(delay, MaxVisibility),
	})
	if err != nil {
		return fmt.Errorf("sqs: nack %s: %w", d.ID, classify(err))
	}
	return nil
}

// seconds rounds d up to whole seconds within 0..hi, so a delay is never
// shorter than asked.
func seconds(d, hi time.Duration) int32 {
	d = min(max(d, 0), hi)
	return int32((d + time.Second - 1) / time.Second)
}

// transientError marks a failure that may succeed when retried later
// (throttling, 5xx, network). Callers test for it with errors.As on
// interface{ Transient() bool }, without importing this package.
type transientError struct{ err error }

func (e *transientError) Error() string   { return e.err.Error() }
func (e *transientError) Unwrap() error   { return e.err }
func (e *transientError) Transient() bool { return true }

// classify marks err transient once, here, using the SDK retryer's rules;
// the SDK has already retried it by the time it gets here.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	transient := retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary ||
		retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		sc := re.HTTPStatusCode()
		transient = transient || sc == http.StatusTooManyRequests || sc >= 500
	}
	if transient {
		return &transientError{err}
	}
	return err
}
