package sqs

import (
	"context"
	"encoding/json"
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

	"github.com/edgevault/edgevault/pkg/pipeline"
)

var _ pipeline.Queue = (*Queue)(nil)

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

// Send implements pipeline.Queue with SendMessageBatch calls of at most
// MaxBatch messages and MaxBatchBytes. It stops at the first batch with a
// failure; messages of earlier batches stay sent (at least once).
func (q *Queue) Send(ctx context.Context, msgs ...pipeline.Message) error {
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
func (q *Queue) sendBatch(ctx context.Context, first int, msgs []pipeline.Message) error {
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
	senderFault := false
	for i, f := range out.Failed {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "message %s: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
		senderFault = senderFault || f.SenderFault
	}
	err = fmt.Errorf("sqs: send: %d of %d messages failed: %s", len(out.Failed), len(msgs), b.String())
	if senderFault {
		return pipeline.Permanent(err)
	}
	return err
}

// Receive implements pipeline.Queue. max is clamped to 1..MaxBatch and wait,
// rounded up to whole seconds, to 0..MaxWait.
func (q *Queue) Receive(ctx context.Context, limit int, wait time.Duration) ([]pipeline.Delivery, error) {
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
	ds := make([]pipeline.Delivery, 0, len(out.Messages))
	for _, m := range out.Messages {
		attempt, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if err != nil || attempt < 1 {
			attempt = 1
		}
		ds = append(ds, pipeline.Delivery{
			Message: pipeline.Message{Body: []byte(aws.ToString(m.Body))},
			ID:      aws.ToString(m.MessageId),
			Receipt: aws.ToString(m.ReceiptHandle),
			Attempt: attempt,
		})
	}
	return ds, nil
}

// Ack implements pipeline.Queue with DeleteMessage.
func (q *Queue) Ack(ctx context.Context, d pipeline.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: ack %s: %w", d.ID, err)
	}
	_, err := q.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: aws.String(d.Receipt)})
	if err != nil {
		return fmt.Errorf("sqs: ack %s: %w", d.ID, classify(err))
	}
	return nil
}

// Nack implements pipeline.Queue with ChangeMessageVisibility; delay is
// rounded up to whole seconds and clamped to 0..MaxVisibility.
func (q *Queue) Nack(ctx context.Context, d pipeline.Delivery, delay time.Duration) error {
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

// classify marks errors that retrying cannot fix as permanent, once,
// here: the SDK has already retried what its retryer deems retryable. A
// 4xx response other than throttling or a timeout (a queue that does not
// exist, access denied, an invalid request) is permanent; everything else
// (5xx, throttling, the network) is transient.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary ||
		retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		return err
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if sc := re.HTTPStatusCode(); sc >= 400 && sc < 500 && sc != http.StatusTooManyRequests && sc != http.StatusRequestTimeout {
			return pipeline.Permanent(err)
		}
	}
	return err
}

// MaxReceiveCount reads the queue's dead-letter maxReceiveCount: how many
// deliveries a message gets before SQS moves it to the dead-letter queue
// (0 when the queue has no redrive policy). The worker gives each task as
// many attempts.
func (q *Queue) MaxReceiveCount(ctx context.Context) (int, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(q.url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return 0, fmt.Errorf("sqs: reading the redrive policy of %s: %w", q.url, classify(err))
	}
	raw := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if raw == "" {
		return 0, nil
	}
	var p struct {
		MaxReceiveCount any `json:"maxReceiveCount"` // a number, or a string of one
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return 0, fmt.Errorf("sqs: redrive policy of %s: %w", q.url, err)
	}
	n, err := strconv.Atoi(fmt.Sprint(p.MaxReceiveCount))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("sqs: redrive policy of %s has maxReceiveCount %v", q.url, p.MaxReceiveCount)
	}
	return n, nil
}
