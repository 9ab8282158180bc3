package mem

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

func TestSuite(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) pipeline.Queue {
		return New(Options{VisibilityTimeout: queuetest.VisibilityTimeout})
	})
}

// clock is a manual clock for decisions made with Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestInjectedClock(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	q := New(Options{VisibilityTimeout: time.Minute, Now: c.Now})
	ctx := context.Background()
	if err := q.Send(ctx, pipeline.Message{Body: []byte("a"), Delay: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := q.Receive(ctx, 1, 0); len(ds) != 0 {
		t.Fatal("delayed message delivered early")
	}
	c.Add(10 * time.Minute)
	ds, _ := q.Receive(ctx, 1, 0)
	if len(ds) != 1 || ds[0].Attempt != 1 {
		t.Fatalf("after the delay: %+v", ds)
	}
	c.Add(59 * time.Second)
	if ds, _ := q.Receive(ctx, 1, 0); len(ds) != 0 {
		t.Fatal("visible before the visibility timeout")
	}
	c.Add(time.Second)
	ds2, _ := q.Receive(ctx, 1, 0)
	if len(ds2) != 1 || ds2[0].Attempt != 2 {
		t.Fatalf("after the visibility timeout: %+v", ds2)
	}
	// The superseded receipt can neither ack nor nack.
	if err := q.Ack(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 1 {
		t.Fatal("a stale receipt deleted the message")
	}
	if err := q.Nack(ctx, ds[0], 0); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("Nack with a stale receipt: %v", err)
	}
	// Delays are capped like SQS's 15 minutes.
	if err := q.Send(ctx, pipeline.Message{Body: []byte("b"), Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c.Add(MaxDelay)
	if err := q.Ack(ctx, ds2[0]); err != nil {
		t.Fatal(err)
	}
	if ds, _ := q.Receive(ctx, 10, 0); len(ds) != 1 || string(ds[0].Body) != "b" {
		t.Fatalf("capped delay: %+v", ds)
	}
}

func TestDeadLetters(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	q := New(Options{VisibilityTimeout: time.Second, MaxReceives: 2, Now: c.Now})
	ctx := context.Background()
	if err := q.Send(ctx, pipeline.Message{Body: []byte("poison")}, pipeline.Message{Body: []byte("fine")}); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		ds, _ := q.Receive(ctx, 10, 0)
		for _, d := range ds {
			if string(d.Body) == "fine" {
				if err := q.Ack(ctx, d); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if d.Attempt != attempt {
				t.Fatalf("attempt %d, want %d", d.Attempt, attempt)
			}
			if err := q.Nack(ctx, d, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ds, _ := q.Receive(ctx, 10, 0); len(ds) != 0 {
		t.Fatalf("message delivered beyond MaxReceives: %+v", ds)
	}
	dl := q.DeadLetters()
	if len(dl) != 1 || string(dl[0].Body) != "poison" || dl[0].Attempts != 2 || dl[0].ID == "" {
		t.Fatalf("dead letters = %+v", dl)
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d", q.Len())
	}
}

func TestSendIsAllOrNothing(t *testing.T) {
	q := New(Options{})
	err := q.Send(context.Background(), pipeline.Message{Body: []byte("ok")}, pipeline.Message{})
	if err == nil {
		t.Fatal("empty body accepted")
	}
	if q.Len() != 0 {
		t.Fatal("part of a rejected Send was enqueued")
	}
}

func TestReceiveCopiesBodies(t *testing.T) {
	q := New(Options{})
	ctx := context.Background()
	b := []byte("abc")
	if err := q.Send(ctx, pipeline.Message{Body: b}); err != nil {
		t.Fatal(err)
	}
	b[0] = 'X'
	ds, _ := q.Receive(ctx, 1, 0)
	if len(ds) != 1 || string(ds[0].Body) != "abc" {
		t.Fatalf("body aliased the caller's slice: %+v", ds)
	}
}
