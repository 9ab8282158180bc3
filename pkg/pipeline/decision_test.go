package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

func TestBackoff(t *testing.T) {
	b := pipeline.Backoff{Base: 10 * time.Second, Limit: 5 * time.Minute}
	for attempt, want := range map[int]time.Duration{0: 10 * time.Second, 1: 10 * time.Second, 2: 20 * time.Second,
		3: 40 * time.Second, 5: 160 * time.Second, 6: 5 * time.Minute, 1000: 5 * time.Minute} {
		if got := b.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %s, want %s", attempt, got, want)
		}
	}
	if got := (pipeline.Backoff{Base: time.Second}).Delay(30); got != time.Second<<20 {
		t.Errorf("uncapped Delay(30) = %s, want the shift bounded at 2^20", got)
	}
}

// TestDecideAndSettle runs every kind of delivery outcome through Decide
// and then Settle on an in-memory queue, once as the embedded runner does
// (ack = q.Ack) and once as a Lambda SQS handler does (ack = nil: the
// event source deletes what is reported handled), and looks at what
// happened to the message: deleted, hidden for how long, re-sent.
func TestDecideAndSettle(t *testing.T) {
	const maxAttempts = 3
	b := pipeline.Backoff{Base: 10 * time.Second, Limit: time.Minute}
	type outcome struct {
		handled bool
		// left is the queue's length after settling (in flight, delayed
		// or visible); visibleAfter when the message (or its copy) can
		// be received again (-1: never, it is gone or still in flight),
		// with attempt as its receive count then.
		left         int
		visibleAfter time.Duration
		attempt      int
	}
	cases := []struct {
		name     string
		err      error
		cut      bool // the task's context ended (soft deadline)
		attempt  int
		want     pipeline.Decision
		embedded outcome
		lambda   outcome
	}{
		{name: "success", err: nil, attempt: 1,
			want:     pipeline.Decision{Action: pipeline.Ack},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: true, left: 1, visibleAfter: -1}},
		{name: "bad message", err: fmt.Errorf("%w: not JSON", events.ErrBadMessage), attempt: 1,
			want:     pipeline.Decision{Action: pipeline.DeadLetter},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: 2}},
		{name: "permanent", err: pipeline.Permanent(errors.New("403 refused")), attempt: 1,
			want:     pipeline.Decision{Action: pipeline.DeadLetter},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: 2}},
		{name: "permanent although cut short", err: pipeline.Permanent(errors.New("403 refused")), cut: true, attempt: 1,
			want:     pipeline.Decision{Action: pipeline.DeadLetter},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: 2}},
		{name: "failed for good earlier", err: fmt.Errorf("%w: unit-1: boom", pipeline.ErrTaskFailed), attempt: 2,
			want:     pipeline.Decision{Action: pipeline.DeadLetter},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: 3}},
		{name: "busy", err: fmt.Errorf("%w (unit-1)", pipeline.ErrBusy), attempt: 1,
			want: pipeline.Decision{Action: pipeline.Requeue, Delay: b.Base},
			// A fresh copy: waiting for the lease uses up no attempt.
			embedded: outcome{handled: true, left: 1, visibleAfter: b.Base, attempt: 1},
			lambda:   outcome{handled: true, left: 2, visibleAfter: b.Base, attempt: 1}},
		{name: "busy on the last attempt", err: fmt.Errorf("%w (unit-1)", pipeline.ErrBusy), attempt: maxAttempts,
			want:     pipeline.Decision{Action: pipeline.Requeue, Delay: b.Base},
			embedded: outcome{handled: true, left: 1, visibleAfter: b.Base, attempt: 1},
			lambda:   outcome{handled: true, left: 2, visibleAfter: b.Base, attempt: 1}},
		{name: "transient", err: errTransient, attempt: 2,
			want:     pipeline.Decision{Action: pipeline.Retry, Delay: 20 * time.Second},
			embedded: outcome{handled: false, left: 1, visibleAfter: 20 * time.Second, attempt: 3},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 20 * time.Second, attempt: 3}},
		{name: "cut short", err: context.DeadlineExceeded, cut: true, attempt: 1,
			want:     pipeline.Decision{Action: pipeline.Retry},
			embedded: outcome{handled: false, left: 1, visibleAfter: 0, attempt: 2},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: 2}},
		{name: "cut short on the last attempt", err: errTransient, cut: true, attempt: maxAttempts,
			want:     pipeline.Decision{Action: pipeline.Retry},
			embedded: outcome{handled: false, left: 1, visibleAfter: 0, attempt: maxAttempts + 1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: maxAttempts + 1}},
		{name: "attempts exhausted", err: errTransient, attempt: maxAttempts,
			want:     pipeline.Decision{Action: pipeline.DeadLetter},
			embedded: outcome{handled: true, left: 0, visibleAfter: -1},
			lambda:   outcome{handled: false, left: 1, visibleAfter: 0, attempt: maxAttempts + 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tctx := testContext(t)
			ctx := tctx
			if c.cut {
				cctx, cancel := context.WithCancel(tctx)
				cancel()
				ctx = cctx
			}
			got := pipeline.Decide(ctx, c.err, c.attempt, maxAttempts, b)
			if got != c.want {
				t.Fatalf("Decide = %v %s, want %v %s", got.Action, got.Delay, c.want.Action, c.want.Delay)
			}
			for _, rt := range []struct {
				name string
				want outcome
			}{{"embedded", c.embedded}, {"lambda", c.lambda}} {
				clk := newClock()
				q := mem.New(mem.Options{VisibilityTimeout: time.Hour, Now: clk.Now})
				d := deliverAt(tctx, t, q, c.attempt)
				var ack func(context.Context, pipeline.Delivery) error
				if rt.name == "embedded" {
					ack = q.Ack
				}
				handled, err := pipeline.Settle(tctx, q, d, got, ack)
				if err != nil {
					t.Fatalf("%s: Settle: %v", rt.name, err)
				}
				if handled != rt.want.handled {
					t.Errorf("%s: handled = %v, want %v", rt.name, handled, rt.want.handled)
				}
				if q.Len() != rt.want.left {
					t.Errorf("%s: %d messages left, want %d", rt.name, q.Len(), rt.want.left)
				}
				wantVisible(tctx, t, rt.name, q, clk, d.Body, rt.want.visibleAfter, rt.want.attempt)
			}
		})
	}
}

// deliverAt sends a message and receives it until its receive count is
// attempt.
func deliverAt(ctx context.Context, t *testing.T, q *mem.Queue, attempt int) pipeline.Delivery {
	t.Helper()
	body, _ := events.Envelope{Task: &events.Task{Job: "j", ID: "00000001-fake", Kind: fakeKind, Unit: "unit-1"}}.Encode()
	if err := q.Send(ctx, pipeline.Message{Body: body}); err != nil {
		t.Fatal(err)
	}
	for {
		ds, err := q.Receive(ctx, 1, 0)
		if err != nil || len(ds) != 1 {
			t.Fatalf("receive: %v %v", ds, err)
		}
		if ds[0].Attempt == attempt {
			return ds[0]
		}
		if err := q.Nack(ctx, ds[0], 0); err != nil {
			t.Fatal(err)
		}
	}
}

// wantVisible checks that nothing can be received before after, and that
// the message can be from then on, with the given receive count (after <
// 0: not now; the queue's length tells deleted from in flight).
func wantVisible(ctx context.Context, t *testing.T, name string, q *mem.Queue, clk *clock, body []byte, after time.Duration, attempt int) {
	t.Helper()
	if after != 0 {
		if ds, _ := q.Receive(ctx, 10, 0); len(ds) != 0 {
			t.Errorf("%s: message visible at once (attempt %d), want after %s", name, ds[0].Attempt, after)
			return
		}
	}
	if after < 0 {
		return
	}
	clk.Advance(after)
	ds, err := q.Receive(ctx, 10, 0)
	if err != nil || len(ds) != 1 {
		t.Errorf("%s: after %s received %d messages (%v), want 1", name, after, len(ds), err)
		return
	}
	if ds[0].Attempt != attempt || string(ds[0].Body) != string(body) {
		t.Errorf("%s: received attempt %d body %s, want attempt %d of the same body", name, ds[0].Attempt, ds[0].Body, attempt)
	}
}

// TestSettleRequeueFallsBackToNack: when the copy of a busy task cannot be
// sent, the original is made visible after the same delay instead of
// being deleted (the task is not lost).
func TestSettleRequeueFallsBackToNack(t *testing.T) {
	ctx := testContext(t)
	for _, embedded := range []bool{true, false} {
		clk := newClock()
		q := mem.New(mem.Options{VisibilityTimeout: time.Hour, Now: clk.Now})
		fq := queuetest.NewFaulty(q, 1)
		d := deliverAt(ctx, t, q, 1)
		fq.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1})
		var ack func(context.Context, pipeline.Delivery) error
		if embedded {
			ack = fq.Ack
		}
		handled, err := pipeline.Settle(ctx, fq, d, pipeline.Decision{Action: pipeline.Requeue, Delay: time.Minute}, ack)
		if handled || err != nil {
			t.Fatalf("embedded=%v: handled=%v err=%v, want not handled, nacked", embedded, handled, err)
		}
		if fq.Count(queuetest.OpAck) != 0 || q.Len() != 1 {
			t.Fatalf("embedded=%v: acked %d, %d left; want the original kept", embedded, fq.Count(queuetest.OpAck), q.Len())
		}
		wantVisible(ctx, t, fmt.Sprintf("embedded=%v", embedded), q, clk, d.Body, time.Minute, 2)
	}
}
