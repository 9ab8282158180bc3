package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// VisibilityTimeout is the visibility timeout the queues given to Run must
// be configured with. SQS counts whole seconds; 2 s leaves room for a slow
// machine between a Receive and the next step.
const VisibilityTimeout = 2 * time.Second

// MaxBody is the largest body every adapter must carry (the SQS limit).
const MaxBody = 256 << 10

// slack absorbs scheduling and server latency in timing assertions.
const slack = 3 * time.Second

// Run runs the Queue suite. newQueue must return a fresh, empty queue with
// a visibility timeout of VisibilityTimeout. The subtests mostly wait for
// delays and timeouts, so they all run at once, each on its own queue,
// regardless of -test.parallel.
func Run(t *testing.T, newQueue func(t *testing.T) pipeline.Queue) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, pipeline.Queue)
	}{
		{"SendReceiveAck", testSendReceiveAck},
		{"LargeBatch", testLargeBatch},
		{"BodySizes", testBodySizes},
		{"ReceiveMax", testReceiveMax},
		{"LongPoll", testLongPoll},
		{"Nack", testNack},
		{"VisibilityTimeout", testVisibilityTimeout},
		{"Delay", testDelay},
		{"ConcurrentReceivers", testConcurrentReceivers},
		{"Cancel", testCancel},
	} {
		wg.Go(func() {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, newQueue(t)) })
		})
	}
}

func body(i int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, i)) }

func send(t *testing.T, q pipeline.Queue, msgs ...pipeline.Message) {
	t.Helper()
	if err := q.Send(context.Background(), msgs...); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func receive(t *testing.T, q pipeline.Queue, max int, wait time.Duration) []pipeline.Delivery {
	t.Helper()
	ds, err := q.Receive(context.Background(), max, wait)
	if err != nil {
		t.Fatalf("Receive(%d, %v): %v", max, wait, err)
	}
	if len(ds) > max {
		t.Fatalf("Receive(%d) returned %d messages", max, len(ds))
	}
	return ds
}

// drain receives until n deliveries arrived or timeout passed.
// drain receives until n distinct messages came or timeout passed. A slow
// server (a loaded machine) may let a visibility timeout pass between two
// receives, so a message can come twice: every delivery is returned (to
// be acked), distinct ones are counted.
func drain(t *testing.T, q pipeline.Queue, n int, timeout time.Duration) []pipeline.Delivery {
	t.Helper()
	var out []pipeline.Delivery
	end := time.Now().Add(timeout)
	for distinct(out) < n && time.Now().Before(end) {
		out = append(out, receive(t, q, 10, time.Second)...)
	}
	return out
}

// distinct counts the different messages among deliveries.
func distinct(ds []pipeline.Delivery) int {
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.ID] = true
	}
	return len(ids)
}

func ack(t *testing.T, q pipeline.Queue, ds ...pipeline.Delivery) {
	t.Helper()
	for _, d := range ds {
		if err := q.Ack(context.Background(), d); err != nil {
			t.Fatalf("Ack(%s): %v", d.ID, err)
		}
	}
}

func wantEmpty(t *testing.T, q pipeline.Queue, wait time.Duration) {
	t.Helper()
	if ds := receive(t, q, 10, wait); len(ds) != 0 {
		t.Fatalf("queue should be empty, received %d messages (first %q attempt %d)", len(ds), ds[0].Body, ds[0].Attempt)
	}
}

func testSendReceiveAck(t *testing.T, q pipeline.Queue) {
	send(t, q, pipeline.Message{Body: body(1)}, pipeline.Message{Body: body(2)}, pipeline.Message{Body: body(3)})
	ds := drain(t, q, 3, slack)
	if len(ds) != 3 {
		t.Fatalf("received %d of 3 messages", len(ds))
	}
	var bodies []string
	ids := map[string]bool{}
	for _, d := range ds {
		bodies = append(bodies, string(d.Body))
		if d.ID == "" || d.Receipt == "" {
			t.Errorf("delivery without id or receipt: %+v", d)
		}
		if ids[d.ID] {
			t.Errorf("duplicate id %s", d.ID)
		}
		ids[d.ID] = true
		if d.Attempt != 1 {
			t.Errorf("first delivery has Attempt %d", d.Attempt)
		}
	}
	slices.Sort(bodies)
	if want := []string{string(body(1)), string(body(2)), string(body(3))}; !slices.Equal(bodies, want) {
		t.Fatalf("bodies = %q, want %q", bodies, want)
	}
	ack(t, q, ds...)
	// Acked messages never come back, even after the visibility timeout.
	time.Sleep(VisibilityTimeout)
	wantEmpty(t, q, time.Second)
}

func testLargeBatch(t *testing.T, q pipeline.Queue) {
	const n = 25
	var msgs []pipeline.Message
	for i := range n {
		msgs = append(msgs, pipeline.Message{Body: body(i)})
	}
	send(t, q, msgs...)
	ds := drain(t, q, n, 2*slack)
	seen := map[string]bool{}
	for _, d := range ds {
		seen[string(d.Body)] = true
	}
	if len(seen) != n {
		t.Fatalf("received %d distinct of %d messages", len(seen), n)
	}
	ack(t, q, ds...)
}

func testBodySizes(t *testing.T, q pipeline.Queue) {
	// Together far above one SQS batch's 256 KiB, so the adapter must
	// split by size as well as by count.
	sizes := []int{MaxBody, 100 << 10, 100 << 10, 100 << 10, 1, MaxBody - 1}
	var msgs []pipeline.Message
	for i, n := range sizes {
		b := bytes.Repeat([]byte{byte('a' + i)}, n)
		msgs = append(msgs, pipeline.Message{Body: b})
	}
	msgs = append(msgs, pipeline.Message{Body: []byte("{\"s\":\"日本語 🙂 é\t\r\n\ufffd\"}")})
	sizes = append(sizes, len(msgs[len(msgs)-1].Body))
	send(t, q, msgs...)
	ds := drain(t, q, len(sizes), 2*slack)
	got := map[string]bool{}
	for _, d := range ds {
		got[string(d.Body)] = true
	}
	for i, m := range msgs {
		if !got[string(m.Body)] {
			t.Errorf("message %d (%d bytes) not received intact", i, sizes[i])
		}
	}
	ack(t, q, ds...)

	for _, bad := range [][]byte{nil, bytes.Repeat([]byte{'x'}, MaxBody+1), []byte("nul\x00"), []byte("bad utf-8 \xff"), []byte("\x1b[0m")} {
		if err := q.Send(context.Background(), pipeline.Message{Body: []byte("ok")}, pipeline.Message{Body: bad}); err == nil {
			t.Errorf("Send accepted a %d-byte body", len(bad))
		}
	}
}

func testReceiveMax(t *testing.T, q pipeline.Queue) {
	var msgs []pipeline.Message
	for i := range 5 {
		msgs = append(msgs, pipeline.Message{Body: body(i)})
	}
	send(t, q, msgs...)
	var all []pipeline.Delivery
	for _, max := range []int{1, 2} {
		ds := receive(t, q, max, slack)
		if len(ds) == 0 {
			t.Fatalf("Receive(%d) returned nothing", max)
		}
		all = append(all, ds...)
	}
	all = append(all, drain(t, q, 5-distinct(all), slack)...)
	if distinct(all) != 5 {
		t.Fatalf("received %d of 5", distinct(all))
	}
	ack(t, q, all...)
}

func testLongPoll(t *testing.T, q pipeline.Queue) {
	// An empty queue waits about as long as asked.
	start := time.Now()
	wantEmpty(t, q, time.Second)
	if d := time.Since(start); d < 900*time.Millisecond || d > time.Second+slack {
		t.Errorf("empty Receive with wait 1s took %v", d)
	}
	// A message arriving during the wait ends it early.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = q.Send(context.Background(), pipeline.Message{Body: body(1)})
	}()
	start = time.Now()
	ds := receive(t, q, 10, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("long poll returned after %v, want soon after the send", d)
	}
	if len(ds) != 1 || !bytes.Equal(ds[0].Body, body(1)) {
		t.Fatalf("long poll returned %d messages", len(ds))
	}
	ack(t, q, ds...)
}

func testNack(t *testing.T, q pipeline.Queue) {
	send(t, q, pipeline.Message{Body: body(1)})
	ds := drain(t, q, 1, slack)
	if len(ds) != 1 || ds[0].Attempt != 1 {
		t.Fatalf("first receive: %+v", ds)
	}
	nacked := time.Now()
	if err := q.Nack(context.Background(), ds[0], time.Second); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	// Hidden for the delay, then back with the next attempt number.
	wantEmpty(t, q, 0)
	ds = drain(t, q, 1, time.Second+slack)
	if len(ds) != 1 {
		t.Fatal("nacked message did not come back")
	}
	if d := time.Since(nacked); d < 900*time.Millisecond {
		t.Errorf("nacked message came back after %v, before its 1s delay", d)
	}
	if ds[0].Attempt != 2 || !bytes.Equal(ds[0].Body, body(1)) {
		t.Errorf("redelivery: attempt %d body %q", ds[0].Attempt, ds[0].Body)
	}
	// Nack without delay: visible again at once.
	if err := q.Nack(context.Background(), ds[0], 0); err != nil {
		t.Fatalf("Nack(0): %v", err)
	}
	ds = drain(t, q, 1, slack)
	if len(ds) != 1 || ds[0].Attempt != 3 {
		t.Fatalf("after Nack(0): %+v", ds)
	}
	ack(t, q, ds...)
	wantEmpty(t, q, 0)
}

func testVisibilityTimeout(t *testing.T, q pipeline.Queue) {
	send(t, q, pipeline.Message{Body: body(1)})
	ds := drain(t, q, 1, slack)
	if len(ds) != 1 {
		t.Fatal("no message")
	}
	received := time.Now()
	// Hidden from other receivers while in flight.
	wantEmpty(t, q, 0)
	ds2 := drain(t, q, 1, VisibilityTimeout+slack)
	if len(ds2) != 1 {
		t.Fatal("unacked message did not reappear after the visibility timeout")
	}
	if d := time.Since(received); d < VisibilityTimeout-100*time.Millisecond {
		t.Errorf("message reappeared after %v, before the %v visibility timeout", d, VisibilityTimeout)
	}
	if ds2[0].Attempt != 2 || ds2[0].ID != ds[0].ID {
		t.Errorf("redelivery: attempt %d id %s (first id %s)", ds2[0].Attempt, ds2[0].ID, ds[0].ID)
	}
	ack(t, q, ds2...)
	wantEmpty(t, q, 0)
}

func testDelay(t *testing.T, q pipeline.Queue) {
	sent := time.Now()
	send(t, q, pipeline.Message{Body: body(1), Delay: time.Second}, pipeline.Message{Body: body(2)})
	ds := drain(t, q, 1, slack)
	if len(ds) != 1 || !bytes.Equal(ds[0].Body, body(2)) {
		t.Fatalf("undelayed message: %+v", ds)
	}
	ack(t, q, ds...)
	ds = drain(t, q, 1, time.Second+slack)
	if len(ds) != 1 || !bytes.Equal(ds[0].Body, body(1)) {
		t.Fatalf("delayed message: %+v", ds)
	}
	if d := time.Since(sent); d < 900*time.Millisecond {
		t.Errorf("delayed message arrived after %v, before its 1s delay", d)
	}
	ack(t, q, ds...)
}

// testConcurrentReceivers checks that nothing is lost while several
// receivers compete; duplicates are allowed (at least once).
func testConcurrentReceivers(t *testing.T, q pipeline.Queue) {
	const n, receivers = 60, 4
	var msgs []pipeline.Message
	for i := range n {
		msgs = append(msgs, pipeline.Message{Body: body(i)})
	}
	send(t, q, msgs...)
	var mu sync.Mutex
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*slack)
	defer cancel()
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				done := len(seen) == n
				mu.Unlock()
				if done {
					return
				}
				ds, err := q.Receive(ctx, 3, 500*time.Millisecond)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Receive: %v", err)
					}
					return
				}
				for _, d := range ds {
					mu.Lock()
					seen[string(d.Body)]++
					mu.Unlock()
					if err := q.Ack(context.Background(), d); err != nil {
						t.Errorf("Ack: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		if seen[string(body(i))] == 0 {
			t.Errorf("message %d lost", i)
		}
	}
}

func testCancel(t *testing.T, q pipeline.Queue) {
	send(t, q, pipeline.Message{Body: body(1)})
	ds := drain(t, q, 1, slack)
	if len(ds) != 1 {
		t.Fatal("no message")
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	wantCanceled := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled ctx: got %v, want context.Canceled", op, err)
		}
	}
	wantCanceled("Send", q.Send(canceled, pipeline.Message{Body: body(2)}))
	_, err := q.Receive(canceled, 1, time.Second)
	wantCanceled("Receive", err)
	wantCanceled("Nack", q.Nack(canceled, ds[0], 0))
	wantCanceled("Ack", q.Ack(canceled, ds[0]))
	ack(t, q, ds...)

	// Canceling a long poll ends it promptly.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err = q.Receive(ctx, 1, 15*time.Second)
	wantCanceled("Receive canceled while waiting", err)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("canceled Receive returned after %v", d)
	}
	// The canceled Send enqueued nothing.
	wantEmpty(t, q, 0)
}

// Drain receives and acks every message queued in q and returns their
// tasks; a message that is not a task envelope fails t.
func Drain(ctx context.Context, t *testing.T, q pipeline.Queue) []events.Task {
	t.Helper()
	var out []events.Task
	for {
		ds, err := q.Receive(ctx, 10, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			return out
		}
		for _, d := range ds {
			env, err := events.Decode(d.Body)
			if err != nil || env.Task == nil {
				t.Fatalf("unexpected message %s: %v", d.Body, err)
			}
			out = append(out, *env.Task)
			if err := q.Ack(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
}
