package mem

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/edgevault/edgevault/pkg/pipeline"
)

var _ pipeline.Queue = (*Queue)(nil)

// Limits shared with the SQS adapter, so code that runs embedded also fits
// SQS.
const (
	MaxBodySize    = 256 << 10
	MaxDelay       = 15 * time.Minute
	MaxVisibility  = 12 * time.Hour
	MaxReceive     = 10
	DefaultTimeout = 30 * time.Second
)

// Options tune a Queue; the zero value gives the defaults.
type Options struct {
	// VisibilityTimeout hides a received message from other receivers
	// until it is acked or nacked. Default DefaultTimeout.
	VisibilityTimeout time.Duration
	// MaxReceives, when > 0, moves a message that was delivered this
	// many times without an Ack to the dead-letter list instead of
	// delivering it again (SQS maxReceiveCount).
	MaxReceives int
	// Now decides visibility and delays. Default time.Now. Blocked
	// Receives sleep in real time until the next decision point.
	Now func() time.Time
}

// DeadLetter is a message that exceeded Options.MaxReceives.
type DeadLetter struct {
	pipeline.Message
	ID       string
	Attempts int
}

// Queue is a concurrency-safe in-memory queue.
type Queue struct {
	o Options

	mu        sync.Mutex
	pending   msgHeap // every live message, by visibility time
	byReceipt map[string]*msg
	dead      []DeadLetter
	changed   chan struct{} // closed (and replaced) when messages may have become visible
	seq       uint64
}

type msg struct {
	id        string
	body      []byte
	visibleAt time.Time
	seq       uint64
	receives  int
	receipt   string // of the latest delivery; "" before the first
	index     int
}

// New returns an empty queue.
func New(o Options) *Queue {
	if o.VisibilityTimeout <= 0 {
		o.VisibilityTimeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Queue{o: o, byReceipt: map[string]*msg{}, changed: make(chan struct{})}
}

// Send implements pipeline.Queue. Messages are checked against the SQS
// limits first; either all are enqueued or none.
func (q *Queue) Send(ctx context.Context, msgs ...pipeline.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: send: %w", err)
	}
	for i, m := range msgs {
		if err := m.CheckBody(i, MaxBodySize); err != nil {
			return fmt.Errorf("mem: send: %w", err)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	for _, m := range msgs {
		q.seq++
		heap.Push(&q.pending, &msg{
			id:        "m-" + strconv.FormatUint(q.seq, 10),
			body:      append([]byte(nil), m.Body...),
			visibleAt: now.Add(clamp(m.Delay, MaxDelay)),
			seq:       q.seq,
		})
	}
	q.notify()
	return nil
}

// Receive implements pipeline.Queue. max is clamped to 1..MaxReceive.
func (q *Queue) Receive(ctx context.Context, limit int, wait time.Duration) ([]pipeline.Delivery, error) {
	limit = min(MaxReceive, max(1, limit))
	deadline := time.NewTimer(max0(wait))
	defer deadline.Stop()
	expired := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("mem: receive: %w", err)
		}
		out, next, changed := q.take(limit)
		if len(out) > 0 || expired {
			return out, nil
		}
		var timer *time.Timer
		var fired <-chan time.Time
		if next > 0 {
			timer = time.NewTimer(next)
			fired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-deadline.C:
			expired = true
		case <-changed:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// take delivers up to limit visible messages. Otherwise it returns how
// long until the next message becomes visible (0 if none is pending) and a
// channel closed when that may change sooner.
func (q *Queue) take(limit int) ([]pipeline.Delivery, time.Duration, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	var out []pipeline.Delivery
	for len(out) < limit && len(q.pending) > 0 && !q.pending[0].visibleAt.After(now) {
		m := q.pending[0]
		if m.receipt != "" {
			delete(q.byReceipt, m.receipt) // the previous delivery's handle expires
		}
		if q.o.MaxReceives > 0 && m.receives >= q.o.MaxReceives {
			heap.Pop(&q.pending)
			q.dead = append(q.dead, DeadLetter{Message: pipeline.Message{Body: m.body}, ID: m.id, Attempts: m.receives})
			continue
		}
		m.receives++
		q.seq++
		m.receipt = m.id + "/" + strconv.FormatUint(q.seq, 10)
		q.byReceipt[m.receipt] = m
		m.visibleAt = now.Add(q.o.VisibilityTimeout)
		heap.Fix(&q.pending, 0)
		out = append(out, pipeline.Delivery{
			Message: pipeline.Message{Body: append([]byte(nil), m.body...)},
			ID:      m.id,
			Receipt: m.receipt,
			Attempt: m.receives,
		})
	}
	var next time.Duration
	if len(out) == 0 && len(q.pending) > 0 {
		next = max(q.pending[0].visibleAt.Sub(now), time.Millisecond)
	}
	return out, next, q.changed
}

// Ack implements pipeline.Queue. Acking a message that is already gone is
// not an error; a receipt superseded by a later delivery deletes nothing,
// as in SQS.
func (q *Queue) Ack(ctx context.Context, d pipeline.Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: ack %s: %w", d.ID, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if m, ok := q.byReceipt[d.Receipt]; ok {
		delete(q.byReceipt, d.Receipt)
		heap.Remove(&q.pending, m.index)
	}
	return nil
}

// ErrNotInFlight is returned by Nack for a receipt that no longer names a
// delivered message (acked, or delivered again since).
var ErrNotInFlight = errors.New("mem: message not in flight")

// Nack implements pipeline.Queue. delay is clamped to 0..MaxVisibility.
func (q *Queue) Nack(ctx context.Context, d pipeline.Delivery, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mem: nack %s: %w", d.ID, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byReceipt[d.Receipt]
	if !ok {
		return fmt.Errorf("mem: nack %s: %w", d.ID, ErrNotInFlight)
	}
	m.visibleAt = q.o.Now().Add(clamp(delay, MaxVisibility))
	heap.Fix(&q.pending, m.index)
	q.notify()
	return nil
}

// DeadLetters returns a copy of the messages moved aside by MaxReceives,
// oldest first.
func (q *Queue) DeadLetters() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]DeadLetter, len(q.dead))
	for i, d := range q.dead {
		d.Body = append([]byte(nil), d.Body...)
		out[i] = d
	}
	return out
}

// Len reports the messages not yet acked (visible, delayed or in flight),
// excluding dead letters.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// notify wakes blocked Receives; q.mu is held.
func (q *Queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func clamp(d, hi time.Duration) time.Duration { return min(max0(d), hi) }

func max0(d time.Duration) time.Duration { return max(d, 0) }

// msgHeap orders messages by visibility time, then by send order.
type msgHeap []*msg

func (h msgHeap) Len() int { return len(h) }
func (h msgHeap) Less(i, j int) bool {
	if !h[i].visibleAt.Equal(h[j].visibleAt) {
		return h[i].visibleAt.Before(h[j].visibleAt)
	}
	return h[i].seq < h[j].seq
}
func (h msgHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *msgHeap) Push(x any) {
	m := x.(*msg)
	m.index = len(*h)
	*h = append(*h, m)
}
func (h *msgHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return m
}
