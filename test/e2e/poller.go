package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQSHandler is a function as an SQS event source mapping invokes it.
type SQSHandler func(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error)

// Poller stands in for Lambda's SQS event source mapping with partial
// batch responses: it receives up to BatchSize messages, invokes the
// handler with a context that ends after Timeout (the function timeout),
// and deletes every message except those reported in BatchItemFailures.
// A handler error, a timeout, or a failure that names no message of the
// batch leaves the whole batch to the queue's visibility timeout.
type Poller struct {
	Client    *sqs.Client
	QueueURL  string
	QueueARN  string
	BatchSize int
	Timeout   time.Duration
	Handler   SQSHandler
	// Duplicate sends a copy of every message the first time it is
	// received, so each one is delivered (at least) twice.
	Duplicate bool
	// Before, when set, may change the context of one invocation (a
	// shorter deadline for a "killed" worker); it sees the batch.
	Before func(ctx context.Context, ev awsevents.SQSEvent) (context.Context, context.CancelFunc)

	mu          sync.Mutex
	invocations int
	handled     int
	failures    int
}

const dupAttr = "e2e-duplicate"

// Stats reports invocations, messages deleted and failures reported.
func (p *Poller) Stats() (invocations, deleted, failures int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.invocations, p.handled, p.failures
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := p.poll(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func (p *Poller) poll(ctx context.Context) error {
	// The receive is not cut short by ctx: moto keeps serving a long poll
	// whose client went away and would hand it a message that then stays
	// invisible for the whole visibility timeout. The wait is one second.
	out, err := p.Client.ReceiveMessage(context.WithoutCancel(ctx), &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(p.QueueURL),
		MaxNumberOfMessages:         int32(max(p.BatchSize, 1)),
		WaitTimeSeconds:             1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return fmt.Errorf("e2e: receive from %s: %w", p.QueueURL, err)
	}
	if len(out.Messages) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		// Stopped while receiving: hand the batch back at once.
		for _, m := range out.Messages {
			if _, err := p.Client.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(p.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
				return fmt.Errorf("e2e: release a message: %w", err)
			}
		}
		return nil
	}
	ev := awsevents.SQSEvent{}
	for _, m := range out.Messages {
		if p.Duplicate && m.MessageAttributes[dupAttr].StringValue == nil {
			if _, err := p.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(p.QueueURL), MessageBody: m.Body,
				MessageAttributes: map[string]sqstypes.MessageAttributeValue{dupAttr: {DataType: aws.String("String"), StringValue: aws.String("1")}}}); err != nil {
				return fmt.Errorf("e2e: duplicating a message: %w", err)
			}
		}
		ev.Records = append(ev.Records, awsevents.SQSMessage{
			MessageId:      aws.ToString(m.MessageId),
			ReceiptHandle:  aws.ToString(m.ReceiptHandle),
			Body:           aws.ToString(m.Body),
			Md5OfBody:      aws.ToString(m.MD5OfBody),
			Attributes:     m.Attributes,
			EventSource:    "aws:sqs",
			EventSourceARN: p.QueueARN,
			AWSRegion:      "us-east-1",
		})
	}
	resp, err := p.invoke(ctx, ev)
	p.mu.Lock()
	p.invocations++
	p.mu.Unlock()
	if err != nil {
		return nil // the whole batch comes back after the visibility timeout
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for id := range failed {
		known := false
		for _, r := range ev.Records {
			known = known || r.MessageId == id
		}
		if !known {
			return nil // Lambda treats an unknown identifier as a failed batch
		}
	}
	for i, r := range ev.Records {
		if failed[r.MessageId] {
			continue
		}
		if _, err := p.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(p.QueueURL), ReceiptHandle: out.Messages[i].ReceiptHandle}); err != nil {
			return fmt.Errorf("e2e: delete: %w", err)
		}
	}
	p.mu.Lock()
	p.handled += len(ev.Records) - len(failed)
	p.failures += len(failed)
	p.mu.Unlock()
	return nil
}

func (p *Poller) invoke(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
	ictx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	if p.Before != nil {
		var c2 context.CancelFunc
		ictx, c2 = p.Before(ictx, ev)
		defer c2()
	}
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: NewRequestID()})
	type result struct {
		resp awsevents.SQSEventResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := p.Handler(ictx, ev)
		done <- result{r, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ictx.Done():
		// Lambda stops a function at its deadline; give the handler a
		// moment, as the process would not get any.
		select {
		case r := <-done:
			return r.resp, r.err
		case <-time.After(2 * time.Second):
			return awsevents.SQSEventResponse{}, fmt.Errorf("e2e: invocation timed out")
		}
	}
}

// NewRequestID returns a Lambda-style request id.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// QueueDepth is the approximate number of visible plus in-flight messages.
func QueueDepth(ctx context.Context, c *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, 0, err
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}
