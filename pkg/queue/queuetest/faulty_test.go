package queuetest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edgevault/edgevault/pkg/pipeline"
	"github.com/edgevault/edgevault/pkg/queue/mem"
	"github.com/edgevault/edgevault/pkg/queue/queuetest"
)

func msgs(bodies ...string) []pipeline.Message {
	var out []pipeline.Message
	for _, b := range bodies {
		out = append(out, pipeline.Message{Body: []byte(b)})
	}
	return out
}

func receiveAll(t *testing.T, q pipeline.Queue, wait time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		ds, err := q.Receive(context.Background(), 10, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got = append(got, string(d.Body))
			if err := q.Ack(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	return got
}

// A Faulty queue with nothing armed is a Queue like any other.
func TestFaultyPassesTheSuite(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) pipeline.Queue {
		return queuetest.NewFaulty(mem.New(mem.Options{VisibilityTimeout: queuetest.VisibilityTimeout}), 1)
	})
}

func TestFaultyPartialSend(t *testing.T) {
	m := mem.New(mem.Options{})
	f := queuetest.NewFaulty(m, 1)
	f.Inject(queuetest.Fault{Op: queuetest.OpSend, Nth: 1, Partial: 2})
	if err := f.Send(context.Background(), msgs("a", "b", "c")...); !errors.Is(err, queuetest.ErrInjected) {
		t.Fatalf("send: %v", err)
	}
	if got := receiveAll(t, f, 100*time.Millisecond); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a partial send delivered %v, want the first two", got)
	}
	if err := f.Send(context.Background(), msgs("d")...); err != nil || f.Count(queuetest.OpSend) != 2 {
		t.Fatalf("the fault fired again (%v) or the count is off (%d)", err, f.Count(queuetest.OpSend))
	}
}

func TestFaultyDuplicatesAndReorders(t *testing.T) {
	f := queuetest.NewFaulty(mem.New(mem.Options{}), 7)
	f.Duplicate, f.Reorder = true, 50*time.Millisecond
	var sent []string
	for i := range 20 {
		sent = append(sent, string(rune('a'+i)))
	}
	if err := f.Send(context.Background(), msgs(sent...)...); err != nil {
		t.Fatal(err)
	}
	got := receiveAll(t, f, 300*time.Millisecond)
	if len(got) != 40 {
		t.Fatalf("%d deliveries of 20 messages sent twice", len(got))
	}
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	want := append(slices.Clone(sent), sent...)
	slices.Sort(want)
	if !slices.Equal(sorted, want) {
		t.Fatalf("deliveries %v", got)
	}
	if slices.IsSorted(got) {
		t.Fatal("reordering left the messages in order")
	}
}
