// Package lambdatest plays Lambda's SQS event source in-process: it
// receives batches from any pipeline.Queue, hands them to a handler as an
// SQS event (with the attempt as ApproximateReceiveCount and a deadline
// like an invocation's) and deletes the records the handler did not report
// as failed, as partial batch responses work. Handler tests and the crash
// suite drive the functions of pkg/serverless with it over an in-memory
// queue and a directory store.
package lambdatest

import (
	"context"
	"strconv"
	"sync"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Handler is an SQS-triggered function's handler.
type Handler func(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error)

// EventSource feeds one queue to one handler.
type EventSource struct {
	Queue     pipeline.Queue
	Handler   Handler
	BatchSize int           // default 1
	Timeout   time.Duration // the invocation's deadline (default 1 min)
	// Before may change the context of one invocation (a shorter deadline
	// for a "killed" function); it sees the batch.
	Before func(ctx context.Context, ev awsevents.SQSEvent) (context.Context, context.CancelFunc)

	mu                           sync.Mutex
	invocations, deleted, failed int
	requests                     int
}

// Stats reports invocations, records deleted and records reported failed.
func (s *EventSource) Stats() (invocations, deleted, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.invocations, s.deleted, s.failed
}

// Run polls until ctx ends, invoking the handler for every batch. Like
// Lambda's poller it keeps going when the queue fails: a receive is
// tried again, a record whose delete failed comes back after its
// visibility timeout.
func (s *EventSource) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if _, err := s.Poll(ctx, 50*time.Millisecond); err != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Poll receives one batch (waiting up to wait) and invokes the handler
// with it; it reports how many records the batch held.
func (s *EventSource) Poll(ctx context.Context, wait time.Duration) (int, error) {
	ds, err := s.Queue.Receive(ctx, max(s.BatchSize, 1), wait)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	ev := awsevents.SQSEvent{}
	byID := map[string]pipeline.Delivery{}
	for _, d := range ds {
		byID[d.ID] = d
		ev.Records = append(ev.Records, awsevents.SQSMessage{
			MessageId: d.ID, ReceiptHandle: d.Receipt, Body: string(d.Body), EventSource: "aws:sqs",
			Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(d.Attempt)},
		})
	}
	s.mu.Lock()
	s.requests++
	rid := "lambdatest-" + strconv.Itoa(s.requests)
	s.mu.Unlock()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ictx, cancel := context.WithTimeout(lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: rid}), timeout)
	defer cancel()
	if s.Before != nil {
		var c2 context.CancelFunc
		ictx, c2 = s.Before(ictx, ev)
		defer c2()
	}
	resp, err := s.Handler(ictx, ev)
	s.mu.Lock()
	s.invocations++
	s.mu.Unlock()
	if err != nil {
		return len(ds), nil // the whole batch comes back after its visibility timeout
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for id, d := range byID {
		if failed[id] {
			s.count(false)
			continue
		}
		if err := s.Queue.Ack(context.WithoutCancel(ctx), d); err != nil {
			s.count(false) // it comes back after its visibility timeout
			continue
		}
		s.count(true)
	}
	return len(ds), nil
}

func (s *EventSource) count(deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if deleted {
		s.deleted++
	} else {
		s.failed++
	}
}
